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
import math
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
                  "BoolStorage": "?", "BFloat16Storage": "<u2"}
# Every size a file states is checked against the bytes it holds and against these caps before anything is
# allocated, so a small file cannot claim gigabytes. The reference generator's file is 45 MB (11.4M float32);
# the caps leave room for generators sixteen times as large.
MAX_FILE_BYTES = 1 << 30
MAX_WEIGHT_BYTES = 1 << 30  # all tensors together, as float32 after reading
MAX_PICKLE_BYTES = 64 << 20  # the pickled structure alone (names, shapes), storages excluded


class UnsafeFile(ValueError):
    """The file names a Python object a weights file has no reason to hold."""


class StorageType:
    def __init__(self, dtype, bfloat16=False):
        self.dtype, self.bfloat16 = np.dtype(dtype), bfloat16

    def array(self, buffer, numel):
        """The storage's elements; bfloat16 (the upper half of a float32) widened to float32 exactly."""
        values = np.frombuffer(buffer, self.dtype, numel)
        return (values.astype("<u4") << 16).view("<f4") if self.bfloat16 else values


def check_view(storage_len, offset, size, stride):
    """Refuse a tensor whose view reaches outside its storage (as_strided would read other memory)."""
    numbers = [offset, *size, *stride]
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers) or len(size) != len(stride):
        raise ValueError(f"a tensor with a malformed view (offset {offset!r}, size {size!r}, stride {stride!r})")
    if offset < 0 or any(n < 0 for n in size):
        raise ValueError(f"a tensor with a negative offset or size ({offset}, {tuple(size)})")
    if any(s < 1 for n, s in zip(size, stride) if n > 1):  # torch.save writes positive strides on real dims
        raise ValueError(f"a tensor of shape {tuple(size)} with stride {tuple(stride)}: zero and negative strides "
                         "are not in a saved state dict")
    if 0 in size:
        return
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage_len:
        raise ValueError(f"a tensor of shape {tuple(size)} (offset {offset}, stride {tuple(stride)}) reaches "
                         f"element {last} of a storage of {storage_len}: the file is damaged or crafted")


REBUILD = {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")}
ALLOWED = {("collections", "OrderedDict"): collections.OrderedDict,
           **{("torch", name): StorageType(dtype, name == "BFloat16Storage")
              for name, dtype in STORAGE_DTYPES.items()}}


class Unpickler(pickle.Unpickler):
    """Only ALLOWED names; tensors checked against their storages and counted against MAX_WEIGHT_BYTES.
    `load_storage=None` with `copy=False` reads the structure only (for the legacy layout's first pass)."""

    def __init__(self, file, load_storage, copy=True):
        super().__init__(file)
        self.load_storage, self.copy, self.weight_bytes = load_storage, copy, 0

    def find_class(self, module, name):
        if (module, name) in REBUILD:
            return self.rebuild_tensor
        if (module, name) not in ALLOWED:
            raise UnsafeFile(f"it names the Python object {module}.{name}, which a file of weights does not hold; "
                             "it was not loaded (unpickling it could run code)")
        return ALLOWED[(module, name)]

    def persistent_load(self, saved_id):
        if not isinstance(saved_id, tuple) or saved_id[0] not in ("storage", b"storage"):
            raise UnsafeFile(f"an unknown record {saved_id!r:.60}")
        return self.load_storage(*saved_id[1:])

    def rebuild_tensor(self, storage, offset, size, stride, *_):
        """torch._utils._rebuild_tensor_v2's arguments (requires_grad, hooks, metadata ignored) -> a NumPy copy."""
        check_view(len(storage), offset, size, stride)
        self.weight_bytes += math.prod(size) * storage.dtype.itemsize
        if self.weight_bytes > MAX_WEIGHT_BYTES:
            raise ValueError(f"its tensors add up to more than {MAX_WEIGHT_BYTES >> 20} MiB, more than a generator's "
                             "weights can be")
        if not self.copy:
            return None
        item = storage.dtype.itemsize
        return np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                               strides=tuple(s * item for s in stride)).copy()


def load(path_or_bytes):
    """The object a `.pth` holds (a state dict: names -> NumPy arrays). `path_or_bytes`: a path or the bytes."""
    if isinstance(path_or_bytes, bytes):
        data = path_or_bytes
    else:
        with open(path_or_bytes, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES >> 20} MiB, more than a generator's weights can be")
    if zipfile.is_zipfile(io.BytesIO(data)):
        return _load_zip(data)
    return _load_legacy(data)


def _claimed(storage_type, numel, available):
    """A storage's claimed size in bytes, refused before allocation when the file cannot hold it."""
    if not isinstance(numel, int) or numel < 0:
        raise ValueError(f"a storage of {numel!r} elements")
    nbytes = numel * storage_type.dtype.itemsize
    if nbytes > min(available, MAX_WEIGHT_BYTES):
        raise ValueError(f"a storage claims {numel} elements ({nbytes} bytes) where the file holds {available}")
    return nbytes


def _load_zip(data):
    archive = zipfile.ZipFile(io.BytesIO(data))
    pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise ValueError("a zip file, but not one torch.save wrote (no ARCHIVE/data.pkl)")
    root = pickles[0][:-len("data.pkl")]
    if archive.namelist().count(root + "byteorder") and archive.read(root + "byteorder") != b"little":
        raise ValueError("saved on a big-endian machine, which this reader does not convert")
    if archive.getinfo(pickles[0]).file_size > MAX_PICKLE_BYTES:
        raise ValueError(f"its structure (data.pkl) claims more than {MAX_PICKLE_BYTES >> 20} MiB")
    storages = {}

    def storage(storage_type, key, location, numel):
        if key not in storages:
            name = f"{root}data/{key}"
            if name not in archive.NameToInfo:
                raise ValueError(f"storage {key} is named but not in the archive")
            # the entry's stated size bounds what decompressing it may produce (zipfile stops there)
            stated = archive.getinfo(name).file_size
            if stated != _claimed(storage_type, numel, stated):
                raise ValueError(f"storage {key} claims {numel} elements but its record holds {stated} bytes")
            storages[key] = storage_type.array(archive.read(name), numel)
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
    types = {}

    class Claimed:  # the first pass needs each storage's type and length, not its (absent) bytes
        def __init__(self, storage_type, numel):
            self.dtype, self.numel = storage_type.dtype, numel

        def __len__(self):
            return self.numel

    def structure_only(storage_type, key, location, numel, view=None):
        if view is not None:
            raise UnsafeFile("a storage view, which state dicts of convolutional networks do not hold")
        _claimed(storage_type, numel, len(data) - f.tell())
        types[key] = (storage_type, numel)
        return Claimed(storage_type, numel)

    Unpickler(io.BytesIO(main), structure_only, copy=False).load()  # storages' bytes follow the object
    storages = {}
    for key in plain():
        if key not in types:
            raise ValueError(f"storage {key!r} follows the object but the object never names it")
        storage_type, numel = types[key]
        header = f.read(8)
        if len(header) != 8:
            raise ValueError("the file ends before its storages do (truncated)")
        (count,) = struct.unpack("<q", header)
        if count != numel:
            raise ValueError(f"storage {key} holds {count} elements where the object claims {numel}")
        nbytes = _claimed(storage_type, count, len(data) - f.tell())
        storages[key] = storage_type.array(f.read(nbytes), count)
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
