"""PyTorch weight files (`.pth`) read as NumPy arrays, without PyTorch and without running the file's code.

A `.pth` is a pickle, and unpickling runs whatever callables the file names: loading an untrusted one with plain
`pickle` (or an old `torch.load`) can run code. This reader allows only what a state dict is made of: ordered
dicts, tensors rebuilt from their storages, and the storage types of plain numbers; any other name in the file is
refused, with that name, before anything is called.

Both of PyTorch's layouts are read: the zip archive (`torch.save` since PyTorch 1.6: ARCHIVE/data.pkl plus one
raw record per storage, ARCHIVE/data/KEY) and the older sequence of pickles (magic number, protocol version,
system info, the object, its storage keys, then each storage as an int64 element count and its bytes), in which
the reference's published models were saved. The layouts are read off torch/serialization.py (`_load`,
`_legacy_load`).
"""
import collections
import io
import pickle
import pickletools
import struct
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
# torch.<Name>Storage -> the element type its bytes hold (little-endian, as torch.save writes on x86 and ARM)
STORAGE_DTYPES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8",
                  "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
                  "BoolStorage": "?"}


class UnsafeFile(ValueError):
    """The file names a Python object a weights file has no reason to hold."""


class StorageType:
    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)


def rebuild_tensor(storage, offset, size, stride, *_):
    """torch._utils._rebuild_tensor_v2's arguments (requires_grad, hooks and metadata ignored) -> a NumPy copy."""
    item = storage.dtype.itemsize
    return np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=tuple(s * item for s in stride)).copy()


ALLOWED = {("collections", "OrderedDict"): collections.OrderedDict,
           ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
           ("torch._utils", "_rebuild_tensor"): rebuild_tensor,
           **{("torch", name): StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()}}


class Unpickler(pickle.Unpickler):
    def __init__(self, file, load_storage):
        super().__init__(file)
        self.load_storage = load_storage

    def find_class(self, module, name):
        if (module, name) not in ALLOWED:
            raise UnsafeFile(f"it names the Python object {module}.{name}, which a file of weights does not hold; "
                             "it was not loaded (unpickling it could run code)")
        return ALLOWED[(module, name)]

    def persistent_load(self, saved_id):
        if not isinstance(saved_id, tuple) or saved_id[0] not in ("storage", b"storage"):
            raise UnsafeFile(f"an unknown record {saved_id!r:.60}")
        return self.load_storage(*saved_id[1:])


def load(path_or_bytes):
    """The object a `.pth` holds (a state dict: names -> NumPy arrays). `path_or_bytes`: a path or the bytes."""
    if isinstance(path_or_bytes, bytes):
        data = path_or_bytes
    else:
        with open(path_or_bytes, "rb") as f:
            data = f.read()
    if zipfile.is_zipfile(io.BytesIO(data)):
        return _load_zip(data)
    return _load_legacy(data)


def _load_zip(data):
    archive = zipfile.ZipFile(io.BytesIO(data))
    pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise ValueError("a zip file, but not one torch.save wrote (no ARCHIVE/data.pkl)")
    root = pickles[0][:-len("data.pkl")]
    if archive.namelist().count(root + "byteorder") and archive.read(root + "byteorder") != b"little":
        raise ValueError("saved on a big-endian machine, which this reader does not convert")
    storages = {}

    def storage(storage_type, key, location, numel):
        if key not in storages:
            storages[key] = np.frombuffer(archive.read(f"{root}data/{key}"), storage_type.dtype, numel)
        return storages[key]

    return Unpickler(io.BytesIO(archive.read(pickles[0])), storage).load()


def _load_legacy(data):
    f = io.BytesIO(data)
    plain = lambda: Unpickler(io.BytesIO(_next_pickle(f)), None).load()  # noqa: E731  (no storages in these)
    try:
        magic = plain()
    except Exception:
        magic = None
    if magic != LEGACY_MAGIC:
        raise ValueError("not a file torch.save wrote (neither its zip archive nor its older pickle sequence)")
    if plain() != LEGACY_PROTOCOL:
        raise ValueError("an unknown version of torch.save's older format")
    plain()  # system info: sizes of C types, byte order
    main = _next_pickle(f)
    dtypes = {}

    def shape_only(storage_type, key, location, numel, view=None):
        if view is not None:
            raise UnsafeFile("a storage view, which state dicts of convolutional networks do not hold")
        dtypes[key] = storage_type.dtype
        return np.zeros(numel, storage_type.dtype)

    Unpickler(io.BytesIO(main), shape_only).load()  # the storages' types: their bytes follow the object
    storages = {}
    for key in plain():
        (count,) = struct.unpack("<q", f.read(8))
        storages[key] = np.frombuffer(f.read(count * dtypes[key].itemsize), dtypes[key], count)
    return Unpickler(io.BytesIO(main), lambda _type, key, *_: storages[key]).load()


def _next_pickle(f):
    """The bytes of the next pickle in `f`, found by reading its opcodes (which runs nothing)."""
    start = f.tell()
    for opcode, _, _ in pickletools.genops(f):
        if opcode.name == "STOP":
            break
    end = f.tell()
    f.seek(start)
    return f.read(end - start)
