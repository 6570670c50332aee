"""`cyclegan preprocess`: run the Beam job; flags it does not know pass through to Beam.

Locally it runs on Beam's own runner in multi-processing mode, one worker per core; any Beam option passes
through, so `--runner DataflowRunner --project P --region R --temp_location gs://... --setup_file ./setup.py`
runs the same job on Dataflow.
"""
import json
import os
import signal
import sys
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options import pipeline_options

from preprocessing.jobs import job_parser, UsageError, add_config_flags, check_at_least, config_from_flags
from pipeline import files, graph, staging
from pipeline.config import PreprocessConfig
from pipeline.sources import discover
from preprocessing.schema import MANIFEST_NAME, REJECTED_NAME, SHARD_NAME


def beam_options(beam_args):
    """PipelineOptions from the flags left over; one that no Beam option class knows is an error, not ignored."""
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


def check(config):
    if not config.output:
        raise UsageError("--output is required: the folder (local or gs://) for the shards and the manifest")
    check_at_least(("--max_size", config.max_size, 1), ("--min_side", config.min_side, 1),
                   ("--max_pixels", config.max_pixels, 1), ("--shard_size_mb", config.shard_size_mb, 1),
                   ("--num_shards", config.num_shards, 0), ("--min_train_shards", config.min_train_shards, 1),
                   ("--min_test_shards", config.min_test_shards, 1))
    if not 1 <= config.jpeg_quality <= 100:
        raise UsageError(f"--jpeg_quality {config.jpeg_quality}: must be between 1 and 100")
    if config.min_side > config.max_size:
        raise UsageError(f"--min_side {config.min_side} is above --max_size {config.max_size}: nothing could pass")
    for flag, path in (("--output", config.output), ("--input", config.input)):
        problem = path and files.check_literal(path, flag)
        if problem:
            raise UsageError(problem)
    check_writable(config.output)
    finished = FileSystems.exists(FileSystems.join(config.output, MANIFEST_NAME))
    if finished and not config.overwrite:
        raise UsageError(f"--output {config.output} already holds a {MANIFEST_NAME}; pass --overwrite to "
                         "replace it, or choose another folder")
    stale = previous_output(config.output)
    if stale:
        files.delete(stale)
        print("preprocess: removed what the " + ("previous run wrote (--overwrite)" if finished else
              "unfinished run stopped in this folder left") + f": {len(stale)} files and folders in {config.output}")


def check_writable(output):
    """A UsageError now, rather than Beam's tracebacks once every image is prepared, if `output` takes no file."""
    probe = FileSystems.join(output, ".cyclegan-write-check")
    try:
        if files.is_local(output):
            os.makedirs(output, exist_ok=True)
        with FileSystems.create(probe) as f:
            f.write(b"")
        files.delete([probe])
    except Exception as err:  # PermissionError, a file in the way, a bucket that refuses: all mean the same here
        reason = getattr(err, "strerror", None) or str(err).splitlines()[0][:200]
        raise UsageError(f"--output {output}: cannot write there ({reason}); choose a folder this job may "
                         "write to") from None


# What a run writes at the top of --output, and their half-written forms (pipeline/files.py's write_whole).
OUR_FILES = frozenset(name + suffix for name in (MANIFEST_NAME, REJECTED_NAME) for suffix in ("", files.PARTIAL))


def previous_output(output):
    """Every file a previous run in `output` wrote or left: its shards of whatever count (not only those its
    manifest lists), manifest, report, staging files and half-written files. Nothing else in the folder."""
    root = output.rstrip("/") + "/"
    ours = set()
    for match in files.match_under(output):
        relative = match.path[len(root):]
        top = relative.split("/")[0]
        if top == staging.STAGING_FOLDER or top.startswith("beam-temp-"):  # whole folders of temporary files
            ours.add(root + top if files.is_local(output) else match.path)
        elif SHARD_NAME.match(relative) or relative in OUR_FILES:
            ours.add(match.path)
    return sorted(ours)


def print_summary(manifest, seconds, out=sys.stdout):
    print(f"{'split':<8}{'found':>8}{'written':>9}{'rejected':>10}{'dups':>7}{'skipped':>9}{'shards':>8}", file=out)
    total = 0
    for name, entry in manifest["splits"].items():
        total += entry["found"]
        print(f"{name:<8}{entry['found']:>8}{entry['written']:>9}{sum(entry['rejected'].values()):>10}"
              f"{entry['duplicates']:>7}{sum(entry['skipped'].values()):>9}{len(entry['shards']):>8}", file=out)
    print(f"{total} files in {seconds:.1f}s ({total / max(seconds, 1e-9):.1f} files/s); "
          f"dataset fingerprint {manifest['fingerprint'][:16]}", file=out)


def main(argv, prog="cyclegan preprocess"):
    parser = job_parser(prog, __doc__)
    add_config_flags(parser, PreprocessConfig)
    args, beam_args = parser.parse_known_args(argv)
    config = config_from_flags(PreprocessConfig(), args)
    options = beam_options(beam_args)
    FileSystems.set_options(options)  # the checks and the discovery below touch gs:// before the pipeline runs
    check(config)
    sources, missing, source_description = discover(config)
    found = sorted({f"{s.split}{s.domain}" for s in sources})
    print(f"preprocess: found {', '.join(found)}" + (f"; missing {', '.join(missing)}" if missing else ""),
          flush=True)

    started = time.monotonic()
    cloud = options.view_as(pipeline_options.GoogleCloudOptions)
    waits = not cloud.template_location and (config.wait or not is_dataflow(options))
    previous = {signum: signal.signal(signum, raise_stopped) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        pipeline = beam.Pipeline(options=options)
        graph.build(pipeline, sources, config, source_description)
        result = pipeline.run()
        if is_dataflow(options) and result.has_job:
            print(f"preprocess: Dataflow job {result.job_id()}: https://console.cloud.google.com/dataflow/jobs/"
                  f"{cloud.region}/{result.job_id()}?project={cloud.project}", flush=True)
        if waits:
            result.wait_until_finish()
    except Stopped as stop:
        stop_now(stop.signum, config.output, prog)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if waits:  # a job running elsewhere still reads its staging files; its last step deletes them
            staging.remove(config.output)
    if cloud.template_location:
        print(f"preprocess: staged a Dataflow template at {cloud.template_location}; nothing ran here. Launch it "
              f"with: gcloud dataflow jobs run NAME --gcs-location {cloud.template_location} --region {cloud.region}")
        return 0
    if not waits:
        print(f"preprocess: the job runs on Dataflow; when it ends, {FileSystems.join(config.output, MANIFEST_NAME)} "
              "says what it wrote")
        return 0
    with FileSystems.open(FileSystems.join(config.output, MANIFEST_NAME)) as f:
        manifest = json.load(f)
    print_summary(manifest, time.monotonic() - started)
    print(f"wrote {FileSystems.join(config.output, MANIFEST_NAME)}; rejected, duplicate and skipped files are "
          f"listed in {FileSystems.join(config.output, REJECTED_NAME)}")
    return check_written(manifest, config.output)


class Stopped(Exception):
    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_stopped(signum, frame):
    raise Stopped(signum)


def stop_now(signum, output, prog):
    """Ctrl-C or SIGTERM while the job runs: Beam's local runner would wait for its workers forever (also at
    exit, on its threads), so end them, remove the staging files, and leave at once with 128 + the signal."""
    import psutil

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        staging.remove(output)
        removed = "removed its staging files"
    except Exception as err:  # the interrupted job's files may be half gone already
        removed = f"could not remove {staging.staging_dir(output)} ({err}); a rerun removes it"
    print(f"{prog}: stopped by {signal.Signals(signum).name}: the job's workers are ended and nothing was "
          f"finished; {removed}. Run the same command again to start over", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(128 + signum)


def check_written(manifest, output):
    """Exit status 1 when no image at all was written; a warning for each split and domain without one."""
    written = {name: entry["written"] for name, entry in manifest["splits"].items()}
    report = FileSystems.join(output, REJECTED_NAME)
    if not any(written.values()):
        print(f"preprocess: error: not one image was written: every file found was rejected, a duplicate or "
              f"skipped; {report} says why for each", file=sys.stderr)
        return 1
    for name in sorted(name for name, count in written.items() if not count):
        print(f"preprocess: warning: {name}: no image was written (found {manifest['splits'][name]['found']} "
              f"files); {report} says why for each", file=sys.stderr)
    return 0
