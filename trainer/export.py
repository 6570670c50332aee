"""`cyclegan export`: a trained run's generators as SavedModels, one per direction.

    cyclegan export --model_dir DIR --output EXPORT_DIR [--checkpoint PATH | --checkpoint best]

writes EXPORT_DIR/a2b and EXPORT_DIR/b2a (SavedModels) and EXPORT_DIR/export.json (what was exported). Each
serving signature takes a batch of uint8 RGB images of any size (at least 4x4), pads them symmetrically to a
multiple of 4 (and at least 8) as the generator needs, translates, crops back and returns uint8 of the input size.
Loading one needs TensorFlow only: `tf.saved_model.load(EXPORT_DIR + "/a2b").signatures["serving_default"]`.
"""
from preprocessing.flags import job_parser
from preprocessing.process import prepare_libraries
from trainer.serving.image_files import check_writable


def main(argv, prog="cyclegan export"):
    parser = job_parser(prog, __doc__)
    parser.add_argument("--model_dir", required=True, help="the model directory of `cyclegan train`")
    parser.add_argument("--output", required=True, help="folder for a2b/, b2a/ and export.json (local, gs://)")
    parser.add_argument("--checkpoint", help="checkpoint prefix to export (default: the newest), e.g. "
                                             "DIR/checkpoints/ckpt-500, or best: the evaluation's best "
                                             "(--best_metric)")
    args = parser.parse_args(argv)
    prepare_libraries()
    from trainer.run.trained import export  # imports TensorFlow: after prepare_libraries, which quiets it

    check_writable(args.output)
    export(args.model_dir, args.output, args.checkpoint)
    return 0
