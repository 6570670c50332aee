"""The --output folder before a run: writable, not a finished dataset unless --overwrite, and cleared of what an
earlier run there wrote or left half-written, so that no stale shard ends up beside the new ones."""
import os

from apache_beam.io.filesystems import FileSystems

from pipeline import files, staging
from preprocessing.flags import UsageError
from preprocessing.process import PARTIAL, WRITE_PROBE
from preprocessing.schema import MANIFEST_NAME, REJECTED_NAME, SHARD_NAME

FAILURE_LOG = "preprocess-failure.log"  # the tracebacks of a run that failed (pipeline/failure.py)
# What a run writes at the top of --output, and their half-written forms (pipeline/files.py's write_whole).
OUR_FILES = frozenset(name + suffix for name in (MANIFEST_NAME, REJECTED_NAME, FAILURE_LOG)
                      for suffix in ("", PARTIAL))


def prepare(output, overwrite):
    """A UsageError if `output` takes no file or holds a finished dataset (without `overwrite`); otherwise remove
    what an unfinished run there left, and say so. A finished dataset stays, readable, until the new one is whole
    (staging.publish replaces it); returns how many files of it will be replaced."""
    check_writable(output)
    finished = FileSystems.exists(FileSystems.join(output, MANIFEST_NAME))
    if finished and not overwrite:
        raise UsageError(f"--output {output} already holds a {MANIFEST_NAME}; pass --overwrite to replace it, or "
                         "choose another folder")
    ours = previous_output(output)
    stale = left_over(output, ours) if finished else ours
    if stale:
        files.delete(stale)
        print("preprocess: removed what an unfinished run stopped in this folder left: "
              f"{len(stale)} files and folders in {output}")
    if not finished:
        return 0
    print(f"preprocess: the dataset in {output} is kept until this run's is whole, then replaced (--overwrite)")
    return len(ours) - len(stale)


def left_over(output, ours):
    """Of `ours` (previous_output), what a stopped run left beside a finished dataset: staging files and
    half-written files."""
    root = output.rstrip("/") + "/"
    return [path for path in ours if path.startswith(root + staging.STAGING_FOLDER)
            or path.startswith(root + "beam-temp-") or path.endswith(PARTIAL)]


def check_writable(output):
    """A UsageError now, rather than Beam's tracebacks once every image is prepared, if `output` takes no file."""
    probe = FileSystems.join(output, WRITE_PROBE)
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


def previous_output(output, keep_staging=False):
    """Every file a previous run in `output` wrote or left: its shards of whatever count (not only those its
    manifest lists), manifest, report, staging files (unless `keep_staging`) and half-written files. Nothing else
    in the folder."""
    root = output.rstrip("/") + "/"
    ours = set()
    for match in files.match_under(output):
        relative = match.path[len(root):]
        top = relative.split("/")[0]
        if top == staging.STAGING_FOLDER or top.startswith("beam-temp-"):  # whole folders of temporary files
            if not (keep_staging and top == staging.STAGING_FOLDER):
                ours.add(root + top if files.is_local(output) else match.path)
        elif SHARD_NAME.match(relative) or relative in OUR_FILES:
            ours.add(match.path)
    return sorted(ours)
