"""Prepared records wait in staging files until their shard is known; only references to them are shuffled.

A record's shard depends on every image's content hash (see graph.PlanShards), so it is known only after all
images are prepared. Shuffling the records themselves would move every stored image through the runner four
times (to the shard-assigning step, which waits for the plan, then through the group by shard), and Beam's local
runner holds whatever it shuffles in memory (about seven times its size, measured). So each
bundle of the prepare step appends its records to one staging file, and what travels is (file, offset, length):
about 150 bytes an image. The shard writers read the bytes back, a window of records at a time.
"""
import concurrent.futures
import os
import uuid

from apache_beam.io.filesystems import FileSystems

from pipeline import files

STAGING_FOLDER = "_staging"
INCOMING_FOLDER = "dataset"  # _staging/dataset/: the new shards, report and manifest, until the job publishes them
PREVIOUS_FOLDER = "previous"  # _staging/previous/: the dataset being replaced, while the new one moves in
READ_WINDOW = 64  # records read ahead in parallel by a shard writer: remote reads overlap their latency
READ_THREADS = 8


def staging_dir(output):
    return FileSystems.join(output, STAGING_FOLDER)


def incoming_dir(output):
    """Where the job writes the dataset it makes: an earlier dataset in `output` stays whole and readable until
    this one is (see output_folder.publish)."""
    return FileSystems.join(staging_dir(output), INCOMING_FOLDER)


def previous_dir(output):
    """Where publishing sets the replaced dataset aside: the one place it exists while the new one moves in."""
    return FileSystems.join(staging_dir(output), PREVIOUS_FOLDER)


class StagingFile:
    """Appends records to one new file under `folder`; `append` returns the reference the shuffle carries."""

    def __init__(self, folder):
        self.path = FileSystems.join(folder, f"{uuid.uuid4().hex}.records")
        self._file, self._offset = None, 0

    def append(self, record: bytes):
        if self._file is None:  # created on the first record: a bundle of rejects leaves no file
            self._file = FileSystems.create(self.path, mime_type="application/octet-stream",
                                            compression_type="uncompressed")
        self._file.write(record)
        ref = (self.path, self._offset, len(record))
        self._offset += len(record)
        return ref

    def close(self):
        """At the end of the bundle: its references reach the shard writers only after it commits."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _read(ref):
    path, offset, length = ref
    with FileSystems.open(path, compression_type="uncompressed") as f:
        f.seek(offset)
        data = f.read(length)
    if len(data) != length:
        raise IOError(f"staging file {path} holds {len(data)} of the {length} bytes at offset {offset}")
    return data


def read_records(refs):
    """The staged records, in the order of `refs`, holding at most READ_WINDOW of them at a time."""
    refs = list(refs)
    with concurrent.futures.ThreadPoolExecutor(READ_THREADS) as pool:
        for start in range(0, len(refs), READ_WINDOW):
            yield from pool.map(_read, refs[start:start + READ_WINDOW])


def remove(output):
    """Delete the staging files of a run (also those of retried bundles, which nothing references). A dataset set
    aside by a publish that could not be undone is never among them: the next run's output_folder.prepare puts it
    back."""
    folder, previous = staging_dir(output), previous_dir(output).rstrip("/") + "/"
    kept = [m.path for m in files.match_under(folder) if m.path.startswith(previous)]
    files.delete([m.path for m in files.match_under(folder) if not m.path.startswith(previous)]
                 + ([] if kept else [folder]))
