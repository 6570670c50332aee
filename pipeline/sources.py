"""Find the inputs of a preprocessing run, on the launching machine, before any worker starts.

A source is one (split, domain) and where its files are: a recursive glob under a folder, or a TFDS split.
"""
import dataclasses
import re

from apache_beam.io.filesystems import FileSystems

from cyclegan import UsageError
from preprocessing.schema import DOMAINS, SPLITS

SPLIT_DOMAIN = re.compile(rf"^({'|'.join(SPLITS)})({'|'.join(DOMAINS)})$")
GLOB_CHARS = re.compile(r"[*?\[]")


@dataclasses.dataclass(frozen=True)
class FolderSource:
    split: str
    domain: str
    pattern: str  # a Beam glob; `**` crosses folders
    root: str  # paths are reported relative to this, and hidden-ness is judged below it


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


def _has_files(pattern):
    return bool(FileSystems.match([pattern], limits=[1])[0].metadata_list)


def folder_sources(root):
    root = root.rstrip("/")
    sources, missing = [], []
    for split in SPLITS:
        for domain in DOMAINS:
            folder = FileSystems.join(root, f"{split}{domain}")
            if _has_files(folder + "/**"):
                sources.append(FolderSource(split, domain, folder + "/**", folder))
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
        if not _has_files(pattern):
            raise UsageError(f"--glob {spec}: the pattern matches no file")
        root = pattern[:GLOB_CHARS.search(pattern).start()] if GLOB_CHARS.search(pattern) else pattern
        sources.append(FolderSource(split, domain, pattern, root.rsplit("/", 1)[0]))
    return sources, []


def tfds_sources(name, data_dir, download):
    from cyclegan import quiet_libraries

    quiet_libraries()
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
