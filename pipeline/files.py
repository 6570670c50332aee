"""Files by exact path through Beam's FileSystems (local, gs://, whatever the runner reaches).

Beam's `match` and `delete` read every path as a glob, so a folder named `ds[1]` meant its neighbour `ds1` and
could not be deleted. Here a path is a path: local files go through `os`, and remote names with glob characters
are refused up front (see `check_literal`).
"""
import os
import re
import shutil

from apache_beam.io.filesystems import FileSystems

from preprocessing.process import PARTIAL

GLOB_CHARS = re.compile(r"[*?\[]")


def is_local(path):
    return FileSystems.get_scheme(path) is None


def check_literal(path, flag):
    """None, or why `path` cannot be used: a remote name with * ? [ that Beam's filesystems would glob."""
    if not is_local(path) and GLOB_CHARS.search(path):
        return (f"{flag} {path}: Beam's filesystems read * ? [ in a {FileSystems.get_scheme(path)}:// name as a "
                "pattern; choose a name without them")
    return None


def match_under(folder):
    """Every file under `folder` (a path, not a pattern), as FileSystems lists them.

    Each glob character matches any one character in the listing, and the exact folder is then kept by its
    prefix: Beam's globs cannot quote them without a character class that Python's `re` warns about."""
    folder = folder.rstrip("/")
    listed = FileSystems.match([GLOB_CHARS.sub("?", folder) + "/**"])[0].metadata_list
    return [m for m in listed if m.path.startswith(folder + "/")]


def delete(paths):
    """Delete these files or folders (folders with what they hold); missing ones are ignored."""
    for path in paths:
        if is_local(path):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.remove(path)
        elif FileSystems.exists(path):
            FileSystems.delete([path])


def write_whole(path, data: bytes, mime_type):
    """Write `path` by renaming a finished temporary file onto it: a reader sees the old file or the new one,
    never half of one (a killed job once left a half-written manifest.json that broke the next --overwrite)."""
    partial = path + PARTIAL
    with FileSystems.create(partial, mime_type=mime_type) as f:
        f.write(data)
    if not is_local(path):  # object stores: a rename is a copy, which does not replace
        delete([path])
    FileSystems.rename([partial], [path])
