"""Beam's own options from the flags `cyclegan preprocess` does not know, with the local defaults it runs on."""
import os

from apache_beam.options import pipeline_options

from preprocessing.flags import UsageError


def beam_options(beam_args):
    """PipelineOptions from the flags left over; one that no Beam option class knows is an error, not ignored.

    Locally the job runs on Beam's own runner in multi-processing mode, one worker per core: that mode pickles
    every step, as Dataflow does, so code that would fail there fails here first."""
    parser = pipeline_options._BeamArgumentParser(allow_abbrev=False)
    for cls in pipeline_options.PipelineOptions.__subclasses__():
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(beam_args)
    if unknown:
        raise UsageError(f"unknown flag(s) {' '.join(unknown)}: neither a preprocess flag (see --help) "
                         "nor a Beam pipeline option")
    if not any(arg.split("=")[0] in ("--runner", "--direct_running_mode") for arg in beam_args):
        beam_args = [*beam_args, "--direct_running_mode=multi_processing"]
    if not any(arg.startswith("--direct_num_workers") for arg in beam_args):
        beam_args = [*beam_args, f"--direct_num_workers={os.cpu_count() or 1}"]
    options = pipeline_options.PipelineOptions(beam_args)
    if is_dataflow(options):
        cloud = options.view_as(pipeline_options.GoogleCloudOptions)
        missing = [flag for flag, value in (("--project", cloud.project), ("--region", cloud.region),
                                            ("--temp_location", cloud.temp_location or cloud.staging_location))
                   if not value]
        if missing:
            raise UsageError(f"--runner DataflowRunner needs {', '.join(missing)} (e.g. --project my-project "
                             "--region europe-west4 --temp_location gs://my-bucket/tmp)")
    return options


def is_dataflow(options):
    runner = options.view_as(pipeline_options.StandardOptions).runner or ""
    return runner.lower().removesuffix("runner") == "dataflow"
