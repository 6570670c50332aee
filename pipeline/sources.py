"""Find the inputs of a preprocessing run: which sources exist (on the launching machine, before any worker
starts), and every file of a folder source (in a worker).

A source is one (split, domain) and where its files are: a folder, a glob, or a TFDS split. A folder the user
names is a path, never a pattern: only --glob takes patterns. Local folders are walked here rather than matched by
Beam, whose listing drops broken links, unreadable folders and symlinked folders without a word: every entry under
the root is either a file to read or a problem to report.
"""
import dataclasses
import os
import re
import stat

from apache_beam.io.filesystem import FileSystem
from apache_beam.io.filesystems import FileSystems

from pipeline.files import GLOB_CHARS, is_local, match_under
from preprocessing.flags import UsageError
from preprocessing.images import NOT_REGULAR_FILE
from preprocessing.schema import DOMAINS, SPLITS

SPLIT_DOMAIN = re.compile(rf"^({'|'.join(SPLITS)})({'|'.join(DOMAINS)})$")

# What the listing reports instead of a file to read: (status, reason) as in the manifest.
UNREADABLE_FOLDER = ("rejected", "unreadable_folder")
BROKEN_LINK = ("rejected", "broken_link")
UNREADABLE = ("rejected", "unreadable")
NOT_REGULAR = ("skipped", NOT_REGULAR_FILE)
FOLDER_SEEN = ("skipped", "folder_listed_already")
LINK_ACROSS_DOMAINS = ("skipped", "link_across_domains")


@dataclasses.dataclass(frozen=True)
class FolderSource:
    split: str
    domain: str
    root: str  # paths are reported relative to this, and hidden-ness is judged below it
    pattern: str = ""  # a Beam glob (`**` crosses folders) from --glob; empty: everything under root


def crosses_domains(real, root_real):
    """Why a linked folder (its real path) must not be read as part of the domain folder `root_real`, or None: it
    holds that folder (a link to `..` reaches the other domains through it), or it is another split and domain's
    folder of the same dataset. A link anywhere else (a shared image store) is read as the domain's."""
    if root_real == real or root_real.startswith(real.rstrip("/") + "/"):
        return f"a link to {real}, which holds this domain's folder and so the other domains' images"
    dataset = os.path.dirname(root_real)
    top = os.path.relpath(real, dataset).split(os.sep)[0] if real.startswith(dataset + "/") else ""
    if SPLIT_DOMAIN.match(top) and os.path.join(dataset, top) != root_real:
        return f"a link into {os.path.join(dataset, top)}, another split and domain of this dataset"
    return None


def walk_local(root):
    """(path, None) for each regular file under the local folder `root`, (path, (status, reason, detail)) for
    each entry that is not one. A symlinked folder is followed once: a second way to the same folder (a cycle
    included) is reported, not listed again, and so is a link that would read other domains' images."""
    seen, pending, root_real = set(), [root], os.path.realpath(root)
    while pending:
        folder = pending.pop()
        real = os.path.realpath(folder)
        if real in seen:
            yield folder, (*FOLDER_SEEN, f"a link to {real}, whose files are listed already")
            continue
        across = folder != root and crosses_domains(real, root_real)
        if across:
            yield folder, (*LINK_ACROSS_DOMAINS, across + ": not read as this domain's")
            continue
        seen.add(real)
        try:
            with os.scandir(folder) as entries:
                paths = sorted(entry.path for entry in entries)
        except OSError as err:
            yield folder, (*UNREADABLE_FOLDER, f"cannot list this folder ({err.strerror}): its files are not read;"
                                               " give the job permission to read it")
            continue
        folders = []
        for path in paths:
            try:
                mode = os.stat(path).st_mode
            except FileNotFoundError:
                if os.path.islink(path):
                    yield path, (*BROKEN_LINK, f"a symbolic link to {os.readlink(path)}, which does not exist")
                continue  # removed while the folder was listed
            except OSError as err:
                yield path, (*UNREADABLE, str(err))
                continue
            if stat.S_ISDIR(mode):
                folders.append(path)
            elif stat.S_ISREG(mode):
                yield path, None
            else:
                yield path, (*NOT_REGULAR, "not a regular file (a FIFO, socket or device): it is never opened")
        pending.extend(reversed(folders))  # depth first, in sorted order


def list_files(source: FolderSource):
    """What `source` names: (path, None) per file to read, (path, (status, reason, detail)) per problem."""
    if not is_local(source.root):
        matches = FileSystems.match([source.pattern])[0].metadata_list if source.pattern else match_under(source.root)
        for match in matches:
            yield match.path, None
        return
    if not source.pattern:
        yield from walk_local(source.root)
        return
    wanted = re.compile(FileSystem.translate_pattern(source.pattern)).match
    for path, problem in walk_local(source.root):
        if wanted(path) or (problem and problem[:2] == UNREADABLE_FOLDER):  # what it holds cannot be matched
            yield path, problem


@dataclasses.dataclass(frozen=True)
class TfdsSource:
    split: str
    domain: str
    builder_dir: str  # the prepared dataset's folder: workers open it without the builder's code
    tfds_split: str  # one even slice of the TFDS split, so several workers read it in parallel
    image_key: str


def _split_domain(name, flag):
    match = SPLIT_DOMAIN.match(name)
    if not match:
        raise UsageError(f"{flag}: '{name}' is not one of trainA, trainB, testA, testB")
    return match.groups()


def _has_entries(source):
    if is_local(source.root) and not source.pattern:
        try:
            with os.scandir(source.root) as entries:
                return any(True for _ in entries)
        except NotADirectoryError:
            return False
        except OSError:
            return os.path.isdir(source.root)  # unreadable: the listing reports it
    return next(iter(list_files(source)), None) is not None


def folder_sources(root):
    root = root.rstrip("/")
    sources, missing = [], []
    for split in SPLITS:
        for domain in DOMAINS:
            source = FolderSource(split, domain, FileSystems.join(root, f"{split}{domain}"))
            if _has_entries(source):
                sources.append(source)
            else:
                missing.append(f"{split}{domain}/")
    if not sources:
        raise UsageError(f"--input {root}: no trainA/ trainB/ testA/ testB/ folder with files in it; "
                         "give the dataset root, or --glob SPLITDOMAIN=PATTERN per domain")
    return sources, missing


def glob_sources(globs):
    sources = []
    for spec in globs:
        name, sep, pattern = spec.partition("=")
        if not sep or not pattern:
            raise UsageError(f"--glob '{spec}': expected SPLITDOMAIN=PATTERN, e.g. trainA=/data/horses/**/*.jpg")
        split, domain = _split_domain(name, "--glob")
        root = pattern[:GLOB_CHARS.search(pattern).start()] if GLOB_CHARS.search(pattern) else pattern
        source = FolderSource(split, domain, root.rsplit("/", 1)[0], pattern)
        if not _has_entries(source):
            raise UsageError(f"--glob {spec}: the pattern matches no file")
        sources.append(source)
    return sources, []


def tfds_sources(name, data_dir, download):
    from preprocessing.process import prepare_libraries

    prepare_libraries()
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
        if download:
            builder.download_and_prepare()
        info = builder.info
        splits = info.splits
    except Exception as err:  # TFDS raises many types for a missing or unprepared dataset
        raise UsageError(f"--tfds {name}: cannot open it ({type(err).__name__}: {err}); check --tfds_data_dir, "
                         "or pass --tfds_download where this machine may download") from None
    if not splits:
        raise UsageError(f"--tfds {name}: not prepared in {builder.data_dir}; pass --tfds_download")
    image_keys = [k for k, f in info.features.items() if isinstance(f, tfds.features.Image)]
    if not image_keys:
        raise UsageError(f"--tfds {name}: the dataset has no image feature")
    sources, missing = [], []
    for split in SPLITS:
        for domain in DOMAINS:
            tfds_split = f"{split}{domain}"
            if tfds_split not in splits:
                missing.append(tfds_split)
                continue
            slices = min(16, max(1, splits[tfds_split].num_examples // 256))
            sources.extend(TfdsSource(split, domain, str(builder.data_dir), part, image_keys[0])
                           for part in tfds.even_splits(tfds_split, n=slices))
    if not sources:
        raise UsageError(f"--tfds {name}: no split named trainA, trainB, testA or testB (it has {list(splits)})")
    return sources, missing


def discover(config):
    """(sources, missing split-domain names, description of the source for the manifest)."""
    given = [flag for flag, value in (("--input", config.input), ("--glob", config.glob), ("--tfds", config.tfds))
             if value]
    if len(given) != 1:
        raise UsageError("give exactly one of --input ROOT, --glob SPLITDOMAIN=PATTERN (repeatable) or --tfds NAME"
                         + (f" (got {', '.join(given)})" if given else ""))
    if config.input:
        return (*folder_sources(config.input), {"type": "folders", "root": config.input})
    if config.glob:
        return (*glob_sources(config.glob), {"type": "globs", "globs": list(config.glob)})
    return (*tfds_sources(config.tfds, config.tfds_data_dir, config.tfds_download),
            {"type": "tfds", "name": config.tfds, "data_dir": config.tfds_data_dir})
