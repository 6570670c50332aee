"""The --output folder's lifecycle. Before a run: writable, not a finished dataset unless --overwrite, and cleared
of what an earlier run there wrote or left half-written, so that no stale shard ends up beside the new ones. At the
end: the whole new dataset published in place of the old one, so that whatever fails the folder holds one whole
dataset."""
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
    (publish replaces it); returns how many files of it will be replaced."""
    check_writable(output)
    restore_set_aside(output)
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


def _moves(output, manifest):
    """The renames that publish `manifest` (its shards and report waiting in staging's incoming folder) over the
    dataset in `output`: the old manifest aside first, its shards and report after; then the new shards and
    report in, the new manifest last. At every step a reader finds either a whole dataset or no manifest."""
    incoming, previous = staging.incoming_dir(output), staging.previous_dir(output)
    root = output.rstrip("/") + "/"
    old = [path[len(root):] for path in previous_output(output, keep_staging=True)]
    old_data = [name for name in old if SHARD_NAME.match(name) or name == REJECTED_NAME]
    new = [shard["path"] for entry in manifest["splits"].values() for shard in entry["shards"]] + [REJECTED_NAME]
    aside = [(FileSystems.join(output, name), FileSystems.join(previous, name))
             for name in [MANIFEST_NAME] * (MANIFEST_NAME in old) + old_data]
    into = [(FileSystems.join(incoming, name), FileSystems.join(output, name)) for name in new + [MANIFEST_NAME]]
    return aside, into, [root + name for name in old if name not in old_data and name != MANIFEST_NAME]


def _rename(pairs):
    if not pairs:
        return
    sources, targets = zip(*pairs)
    for target in targets:
        if files.is_local(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
    FileSystems.rename(list(sources), list(targets))


def publish(manifest, output):
    """Replace the dataset in `output` with the whole one in staging's incoming folder; returns `manifest`.

    The old dataset is set aside in staging's previous folder, the new one moved in, and only then the old one
    deleted. A failure midway undoes the renames that happened (the old dataset back in place and whole; the new
    one back in incoming, removed with the staging files) and raises. If the undo fails as well, the old dataset
    stays set aside, which staging.remove never deletes and the next run's prepare() puts back."""
    aside, into, leftovers = _moves(output, manifest)
    files.delete(leftovers)  # half-written files and temporary folders: part of no dataset
    try:
        _rename(aside[:1])  # the old manifest first: from here no reader takes the folder's shards as whole
        _rename(aside[1:])
        _rename(into[:-1])
        _rename(into[-1:])  # the new manifest last: from here the new dataset is whole
    except Exception as err:
        try:
            _undo(aside + into)
        except Exception as undo_err:
            raise RuntimeError(f"publishing the new dataset into {output} failed ({err}) and so did putting the old "
                               f"one back ({undo_err}); the old dataset is in {staging.previous_dir(output)}, which "
                               "the next run in this folder moves back") from err
        raise
    files.delete([staging.previous_dir(output)])
    return manifest


def _undo(pairs):
    """Rename back, last first, every (source, target) that happened: its target there and its source not."""
    done = [(src, dst) for src, dst in pairs if FileSystems.exists(dst) and not FileSystems.exists(src)]
    _rename([(dst, src) for src, dst in reversed(done)])


def restore_set_aside(output):
    """A publish that failed and could not undo left the old dataset in staging's previous folder: put it back
    (unless a new manifest made it in, which means the new dataset is whole and the old one is done with)."""
    previous = staging.previous_dir(output)
    aside = [m.path for m in files.match_under(previous)]
    if not aside:
        return
    if FileSystems.exists(FileSystems.join(output, MANIFEST_NAME)):
        files.delete([previous])
        return
    root, top = previous.rstrip("/") + "/", output.rstrip("/") + "/"
    names = [path[len(root):] for path in aside]
    files.delete([path for path in previous_output(output, keep_staging=True)  # the failed publish's new files
                  if SHARD_NAME.match(path[len(top):]) or path[len(top):] == REJECTED_NAME])
    manifest_last = sorted(names, key=lambda name: name == MANIFEST_NAME)
    _rename([(FileSystems.join(previous, name), FileSystems.join(output, name)) for name in manifest_last])
    print(f"preprocess: put back the dataset that a failed publish had set aside in {previous}", flush=True)
