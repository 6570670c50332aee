"""`cyclegan export`: a trained run's generators as SavedModels, one per direction, and ONNX or LiteRT files.

    cyclegan export --model_dir DIR --output EXPORT_DIR [--checkpoint PATH | --checkpoint best]
                    [--format savedmodel,onnx,litert] [--versioned [--version N]] [--max_megapixels M]

writes EXPORT_DIR/a2b and EXPORT_DIR/b2a (SavedModels; with --versioned, EXPORT_DIR/a2b/N/, the layout TF Serving's
--model_base_path needs), EXPORT_DIR/a2b.onnx and .tflite for those formats, and EXPORT_DIR/export.json (what was
exported). Two signatures:

  serving_default  `images`: a batch of uint8 RGB images of any size (at least 4x4) -> `translated`: uint8 of the
                   same size. Padded symmetrically to a multiple of 4 (and at least 8) as the generator needs,
                   translated at the size given, cropped back. The ONNX and LiteRT files hold this function.
  serve_bytes      `image_bytes`: encoded PNG or JPEG images (TF Serving's REST API takes {"b64": "..."}) ->
                   `translated_bytes`: PNG. Each image is scaled as the model's training mode scales images at
                   test time and back, as `cyclegan translate` does; grey becomes RGB and transparency is
                   composited on white. An image above --max_megapixels, or bytes of no PNG or JPEG, fail the
                   request with an error that says so.

With --bytes_default, serve_bytes is serving_default and the pixel signature serve_pixels (Vertex AI's prebuilt
TensorFlow containers call only serving_default). Loading one needs TensorFlow only:
`tf.saved_model.load(EXPORT_DIR + "/a2b").signatures["serving_default"]`.
"""
from preprocessing.flags import UsageError, check_at_least, finite_float, job_parser
from preprocessing.process import prepare_libraries
from trainer.serving.formats import FORMATS, parse_formats
from trainer.serving.image_files import check_writable


def main(argv, prog="cyclegan export"):
    parser = job_parser(prog, __doc__)
    parser.add_argument("--model_dir", required=True, help="the model directory of `cyclegan train`")
    parser.add_argument("--output", required=True, help="folder for a2b/, b2a/ and export.json (local, gs://)")
    parser.add_argument("--checkpoint", help="checkpoint prefix to export (default: the newest), e.g. "
                                             "DIR/checkpoints/ckpt-500, or best: the evaluation's best "
                                             "(--best_metric)")
    parser.add_argument("--format", default="savedmodel",
                        help=f"comma-separated, of {', '.join(FORMATS)} (default: savedmodel; it is always written)")
    parser.add_argument("--versioned", action="store_true",
                        help="write each SavedModel into a numbered folder, a2b/VERSION/, as TF Serving reads them")
    parser.add_argument("--version", type=int, help="that number, with --versioned (default: 1); the other "
                                                      "versions there are kept")
    parser.add_argument("--overwrite", action="store_true",
                        help="with --versioned: replace a version of the same number that is already there")
    parser.add_argument("--bytes_default", action="store_true",
                        help="make serve_bytes the serving_default signature (Vertex AI's prebuilt containers call "
                             "only that one); the pixel signature is then serve_pixels")
    parser.add_argument("--max_megapixels", type=finite_float, default=4.0,
                        help="serve_bytes refuses larger images, rather than the server running out of memory "
                             "(default: 4, about 5 GB for the reference generator; 0: no limit)")
    args = parser.parse_args(argv)
    if args.version is not None and not args.versioned:
        raise UsageError("--version goes with --versioned (numbered folders a2b/VERSION/); add --versioned")
    args.version = 1 if args.version is None else args.version
    check_at_least(("--version", args.version, 1), ("--max_megapixels", args.max_megapixels, 0.0))
    formats = parse_formats(args.format)
    prepare_libraries()
    from trainer.run.trained import export  # imports TensorFlow: after prepare_libraries, which quiets it

    import tensorflow as tf

    existed = tf.io.gfile.exists(args.output)
    check_writable(args.output)
    try:
        export(args.model_dir, args.output, args.checkpoint, formats=formats,
               version=args.version if args.versioned else 0, max_megapixels=args.max_megapixels,
               bytes_default=args.bytes_default, overwrite=args.overwrite)
    except BaseException:
        if not existed and tf.io.gfile.isdir(args.output) and not tf.io.gfile.listdir(args.output):
            tf.io.gfile.rmtree(args.output)  # made here for the export that failed: nothing of it is left
        raise
    return 0
