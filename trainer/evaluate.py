"""`cyclegan evaluate`: how well a model translates a dataset's test images.

    cyclegan evaluate (--model_dir DIR [--checkpoint PATH|best] | --model EXPORT_DIR) --data ROOT --output OUT
                      [--inception_weights FILE]

ROOT is a raw dataset root: testA/, testB/ and, where the answer is known (`cyclegan synth` writes it),
testA_truth/ with the true B image of each test A image under the same name. Reported, and written to
OUT/report.json beside the translations in OUT/a2b/ and OUT/b2a/:
  ground_truth_mae, psnr          G(test A) against the truth (MAE on the [0, 1] scale, PSNR in dB)
  identity_mae, identity_psnr     the same for the identity map: what an untrained model scores
  colour_map_mae (_vs_identity)   the same for the best per-pixel colour map (affine, least squares, fit on the
                                  test pairs themselves): near 0 where colour alone solves the task
  cycle_mae (cycle_mae_a, _b)     F(G(a)) against a and G(F(b)) against b
  fid, kid (fid_b2a, kid_b2a)     G(test A) against test B (F(test B) against test A), from Inception-v3 pool
                                  features; null, with the reason in fid_skipped, without --inception_weights
Each image meets the model at the scale its training mode implies (the run's --preprocess; --native: at its own
size), and is compared at its own size.
"""
from preprocessing.flags import UsageError, check_at_least, job_parser
from preprocessing.process import prepare_libraries
from trainer.evaluation.evaluator import Evaluator, Key, table
from trainer.serving.image_files import check_writable
from trainer.serving.translator import Scaling, export_scaling, load_direction, make_translator


def main(argv, prog="cyclegan evaluate"):
    parser = job_parser(prog, __doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model_dir", help="a `cyclegan train` model directory (its newest checkpoint)")
    source.add_argument("--model", help="an export folder of `cyclegan export` (with a2b/ and b2a/)")
    parser.add_argument("--checkpoint", help="with --model_dir: a checkpoint prefix instead of the newest, or best: "
                                             "the training evaluation's best (--best_metric)")
    parser.add_argument("--data", required=True, help="dataset root with testA/ testB/ [testA_truth/]")
    parser.add_argument("--output", required=True, help="folder for a2b/, b2a/ and report.json")
    parser.add_argument("--inception_weights", default="",
                        help="Inception-v3 .weights.h5 (include_top=False) for FID and KID; skipped without")
    parser.add_argument("--limit", type=int, default=0, help="at most this many test images per domain (0: all)")
    parser.add_argument("--native", action="store_true",
                        help="translate each image whole at its own size, not at the model's test-time scale")
    args = parser.parse_args(argv)
    check_at_least(("--limit", args.limit, 0))
    if args.checkpoint and not args.model_dir:
        raise UsageError("--checkpoint picks one of a --model_dir's checkpoints: give --model_dir with it")
    prepare_libraries()
    check_writable(args.output)
    evaluator = Evaluator(args.data, args.limit, args.inception_weights)  # checks the data and weights first
    if args.model:
        import tensorflow as tf

        root = args.model.rstrip("/")
        a2b = load_direction(f"{root}/a2b")
        b2a = load_direction(f"{root}/b2a") if tf.io.gfile.exists(f"{root}/b2a") else None
        if b2a is None:
            print(f"evaluate: warning: {root} holds a2b only (an import of one direction): the B -> A and cycle "
                  "figures are skipped", flush=True)
        source_text, scaling = args.model, export_scaling(f"{root}/a2b")
    else:
        from preprocessing.flags import view
        from trainer.run.checkpoints import read_run_record
        from trainer.run.imported import random_nets
        from trainer.run.trained import load_run  # imports TensorFlow: after prepare_libraries, which quiets it

        config, nets, checkpoint, step = load_run(args.model_dir, args.checkpoint)
        untrained = [net for net in random_nets(read_run_record(args.model_dir, "")) if net.startswith("G_")]
        if untrained:
            print(f"evaluate: warning: {', '.join(untrained)} holds random weights (`cyclegan import` gave it none): "
                  "the figures of its direction, and the cycle errors, are an untrained network's", flush=True)
        translators = [make_translator(nets[name]) for name in ("G_AB", "G_BA")]  # kept: methods hold them weakly
        a2b, b2a = (translator.translate for translator in translators)
        source_text, scaling = f"{checkpoint} (step {step})", view(config, Scaling)
    evaluator.scaling = None if args.native else scaling
    report = evaluator(a2b, b2a, args.output)
    print(f"evaluate: {source_text} on {args.data}: {report[Key.TEST_IMAGES_A]} test A, {report[Key.TEST_IMAGES_B]} "
          f"test B images")
    for line in table(report):
        print(line)
    print(f"translations in {args.output.rstrip('/')}/a2b and /b2a; report in {args.output.rstrip('/')}/report.json")
    return 0
