"""The --output folder before a run: writable, not a finished dataset unless --overwrite, and cleared of what an
earlier run there wrote or left half-written, so that no stale shard ends up beside the new ones."""
import os

from apache_beam.io.filesystems import FileSystems

from pipeline import files, staging
from preprocessing.jobs import PARTIAL, WRITE_PROBE, UsageError
from preprocessing.schema import MANIFEST_NAME, REJECTED_NAME, SHARD_NAME

# What a run writes at the top of --output, and their half-written forms (pipeline/files.py's write_whole).
OUR_FILES = frozenset(name + suffix for name in (MANIFEST_NAME, REJECTED_NAME) for suffix in ("", PARTIAL))


def prepare(output, overwrite):
    """A UsageError if `output` takes no file or holds a finished dataset (without `overwrite`); otherwise remove
    every file a run there wrote or left, and say so."""
    check_writable(output)
    finished = FileSystems.exists(FileSystems.join(output, MANIFEST_NAME))
    if finished and not overwrite:
        raise UsageError(f"--output {output} already holds a {MANIFEST_NAME}; pass --overwrite to replace it, or "
                         "choose another folder")
    stale = previous_output(output)
    if stale:
        files.delete(stale)
        print("preprocess: removed what the " + ("previous run wrote (--overwrite)" if finished else
              "unfinished run stopped in this folder left") + f": {len(stale)} files and folders in {output}")


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
