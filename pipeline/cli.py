"""`cyclegan preprocess`: run the Beam job; flags it does not know pass through to Beam.

Locally it runs on Beam's own runner in multi-processing mode, one worker per core; any Beam option passes
through, so `--runner DataflowRunner --project P --region R --temp_location gs://... --setup_file ./setup.py`
runs the same job on Dataflow.
"""
import os
import sys
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options import pipeline_options
from apache_beam.runners.dataflow.internal.apiclient import DataflowJobAlreadyExistsError

from pipeline import failure, files, graph, interrupt, output_folder, staging
from pipeline.beam_options import beam_options, is_dataflow
from pipeline.config import PreprocessConfig
from pipeline.dataflow_job import DONE, DataflowJob
from pipeline.sources import discover
from pipeline.summary import check_written, print_summary
from preprocessing import exit_status, lease
from preprocessing.flags import JobFailed, UsageError, add_config_flags, check_fields, config_from_flags, job_parser
from preprocessing.process import TF_LOGS_ENV
from preprocessing.schema import MANIFEST_NAME, REJECTED_NAME, parse_manifest


def check_config(config):
    """A UsageError for the first flag that cannot work."""
    if not config.output:
        raise UsageError("--output is required: the folder (local or gs://) for the shards and the manifest")
    check_fields(config)
    if config.min_side > config.max_size:
        raise UsageError(f"--min_side {config.min_side} is above --max_size {config.max_size}: nothing could pass")
    for flag, path in (("--output", config.output), ("--input", config.input)):
        problem = path and files.check_literal(path, flag)
        if problem:
            raise UsageError(problem)


def main(argv, prog="cyclegan preprocess"):
    parser = job_parser(prog, __doc__)
    add_config_flags(parser, PreprocessConfig)
    args, beam_args = parser.parse_known_args(argv)
    config = config_from_flags(PreprocessConfig(), args)
    options = beam_options(beam_args)
    FileSystems.set_options(options)  # the checks and the discovery below touch gs:// before the pipeline runs
    cloud = options.view_as(pipeline_options.GoogleCloudOptions)
    if is_dataflow(options) and not cloud.template_location:
        running = DataflowJob.running(options)
        if running:  # its staging files are in --output: no check may clear them
            print(f"preprocess: Dataflow job {running.name} ({running.id}) is already running under this "
                  "--job_name; waiting for it instead of starting another", flush=True)
            return wait_for(running, config, prog)
    check_config(config)
    holder = lease.Lease(config.output, config.lease_timeout, flag="--output", what="output folder",
                         clash="two jobs would write each other's shards and delete each other's staging files")
    try:
        holder.take(lambda line: print(f"preprocess: {line}", flush=True))
    except lease.LeaseUnwritable as err:
        print(f"{prog}: error: {err}", file=sys.stderr, flush=True)
        return exit_status.FAILED
    try:
        return run(config, options, cloud, prog)
    finally:
        holder.release()


def run(config, options, cloud, prog):
    """The job, locally or on Dataflow (waited for, or only started), while this process holds the output
    folder."""
    replaced = output_folder.prepare(config.output, config.overwrite)
    sources, missing, source_description = discover(config)
    found = sorted({f"{s.split}{s.domain}" for s in sources})
    print(f"preprocess: found {', '.join(found)}" + (f"; missing {', '.join(missing)}" if missing else ""),
          flush=True)

    started = time.monotonic()
    waits = not cloud.template_location and (config.wait or not is_dataflow(options))
    remote = None  # the Dataflow job, once it exists: a stop request cancels it
    try:
        with interrupt.stop_requests(), failure.beam_errors_held() as held:
            try:
                pipeline = beam.Pipeline(options=options)
                graph.build(pipeline, sources, config, source_description)
                result = pipeline.run()
                if is_dataflow(options) and result.has_job:
                    remote = DataflowJob(options, result.job_id(), cloud.job_name)
                    print(f"preprocess: Dataflow job {result.job_id()}: https://console.cloud.google.com/dataflow/"
                          f"jobs/{cloud.region}/{result.job_id()}?project={cloud.project}", flush=True)
                if waits:
                    result.wait_until_finish()
            except DataflowJobAlreadyExistsError:  # another launcher started it since the look-up above
                waits, remote = False, DataflowJob.running(options)
                if remote is None:
                    raise
                print(f"preprocess: Dataflow job {remote.name} ({remote.id}) started meanwhile under this "
                      "--job_name; waiting for it instead", flush=True)
            except interrupt.Stopped:  # a stop request, not a failure: handled below
                raise
            except Exception as err:
                if not failure.disk_full(err):
                    raise failed(err, held, config.output) from None
                print(f"{prog}: error: --output {config.output}: no space left on device while writing the records; "
                      "nothing was finished and its staging files are removed. Free space, or choose "
                      "another --output, and run again", file=sys.stderr, flush=True)
                return exit_status.FAILED
    except interrupt.Stopped as stop:
        if remote is not None:
            remote.cancel_and_exit(stop.signum, config.output, prog)
        interrupt.stop_now(stop.signum, config.output, prog)
    finally:
        if waits:  # a job running elsewhere still reads its staging files; its last step deletes them
            staging.remove(config.output)
    if remote is not None and not waits and config.wait:
        return wait_for(remote, config, prog)
    if cloud.template_location:
        print(f"preprocess: staged a Dataflow template at {cloud.template_location}; nothing ran here. Launch it "
              f"with: gcloud dataflow jobs run NAME --gcs-location {cloud.template_location} --region {cloud.region}")
        return 0
    if not waits:
        print(f"preprocess: the job runs on Dataflow; when it ends, "
              f"{FileSystems.join(config.output, MANIFEST_NAME)} says what it wrote")
        return 0
    if replaced:
        print(f"preprocess: removed what the previous run wrote (--overwrite): {replaced} files in {config.output}, "
              "once this run's dataset was whole")
    return summarize(config, time.monotonic() - started)


def failed(err, held, output):
    """A failure without a name as a JobFailed: one line with its cause and step, everything else in a log file
    beside the output (or all of it here, with CYCLEGAN_TF_LOGS=1)."""
    if os.environ.get(TF_LOGS_ENV, "") not in ("", "0"):
        held.replay()
        return err
    step, line = failure.cause(err)
    log = FileSystems.join(output, output_folder.FAILURE_LOG)
    try:
        files.write_whole(log, held.text(err).encode(), "text/plain")
        where = f"the full tracebacks are in {log}"
    except Exception:  # the output takes no file: the console is the only place left
        held.replay()
        where = "the full tracebacks are above"
    kept = FileSystems.exists(FileSystems.join(output, MANIFEST_NAME))
    return JobFailed((f"the step '{step}' failed: " if step else "") + f"{line}; its staging files are removed"
                     + ("; the dataset that was there is untouched" if kept else "")
                     + f"; {where} ({TF_LOGS_ENV}=1 shows them here)")


def wait_for(remote, config, prog):
    """Wait for a Dataflow job this launcher did not start (its state polled); cancel it on a stop request."""
    started = time.monotonic()
    with interrupt.stop_requests():
        try:
            state = remote.wait(lambda line: print(line, flush=True))
        except interrupt.Stopped as stop:
            remote.cancel_and_exit(stop.signum, config.output, prog)
    if state != DONE:
        print(f"{prog}: error: Dataflow job {remote.name} ({remote.id}) ended {state}; its messages are in the "
              "Dataflow console", file=sys.stderr, flush=True)
        return exit_status.FAILED
    return summarize(config, time.monotonic() - started)


def summarize(config, seconds):
    """The finished job's summary from its manifest, and the exit status it calls for."""
    manifest_path = FileSystems.join(config.output, MANIFEST_NAME)
    with FileSystems.open(manifest_path) as f:
        manifest = parse_manifest(f.read(), manifest_path)
    print_summary(manifest, seconds)
    print(f"wrote {manifest_path}; rejected, duplicate and skipped files are listed in "
          f"{FileSystems.join(config.output, REJECTED_NAME)}")
    return check_written(manifest, config.output)
