"""`cyclegan import`: the reference's PyTorch generators as a model directory to export, evaluate or fine-tune.

    cyclegan import --a2b latest_net_G_A.pth [--b2a latest_net_G_B.pth] --model_dir DIR [--preset reference]

--a2b and --b2a are the reference's generator state dicts: G_A (A -> B) and G_B (B -> A) of a reference run, or
a published pretrained model (`NAME.pth`, saved by the reference's download script as latest_net_G.pth), which is
one generator, one direction: pass it as --a2b (or --b2a for a model of the other direction). The files are read
without PyTorch and without running their code (trainer/model/pth.py). The networks are those of the preset and
its flags (the reference's: --ngf 64 --n_blocks 9 at 256 px); a file that does not fit them is refused, one line
per key that is missing, unexpected or of another shape.

DIR gets what `cyclegan train` writes: run.json and checkpoints/ckpt-0, at step 0, so that `export --model_dir
DIR`, `evaluate --model_dir DIR` and `train --init_from DIR` (fine-tuning: these weights, fresh optimizers, step
0) take it. A direction not imported keeps random weights, as do both discriminators: `export` writes only the
imported directions, and fine-tuning trains the others from scratch.
"""
from preprocessing.flags import UsageError, add_config_flags, config_from_flags, job_parser
from preprocessing.process import prepare_libraries
from trainer.config import PRESETS, TrainConfig


def main(argv, prog="cyclegan import"):
    parser = job_parser(prog, __doc__)
    parser.add_argument("--a2b", help="the reference's A -> B generator (G_A, or a pretrained NAME.pth)")
    parser.add_argument("--b2a", help="the reference's B -> A generator (G_B)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="reference",
                        help="the networks the weights go into, before the flags below (default: reference)")
    add_config_flags(parser, TrainConfig)
    args = parser.parse_args(argv)
    config = config_from_flags(PRESETS[args.preset], args)
    sources = {net: path for net, path in (("G_AB", args.a2b), ("G_BA", args.b2a)) if path}
    if not sources:
        raise UsageError("give --a2b, --b2a or both: the reference generator files to import")
    if not config.model_dir:
        raise UsageError("--model_dir is required: the folder the imported model directory is written to")
    if config.norm != "instance" or config.upsample != "transpose":
        raise UsageError("the reference's generators use --norm instance and --upsample transpose; their weights "
                         "do not fit other networks")
    prepare_libraries()
    from trainer.run.imported import import_generators  # imports TensorFlow: after prepare_libraries

    import_generators(config, sources)
    return 0
