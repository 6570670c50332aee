"""`.pth` files written opcode by opcode, the way a hostile or damaged file can be: views past their storages, sizes
the bytes do not back. No PyTorch needed (torch.save cannot write these); pth.py's docstring has the layouts."""
import pickle
import struct
import zipfile

from trainer.model import pth


def _global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _int(n):
    return b"I" + str(n).encode() + b"\n"


def _str(text):
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _tuple(items):
    return b"(" + b"".join(items) + b"t"


def tensor(key, numel, offset, size, stride, storage="FloatStorage"):
    """The pickled call torch.save writes for one tensor: _rebuild_tensor_v2(storage record, offset, size, ...)."""
    record = _tuple([_str("storage"), _global("torch", storage), _str(key), _str("cpu"), _int(numel)]) + b"Q"
    args = _tuple([record, _int(offset), _tuple(map(_int, size)), _tuple(map(_int, stride)), b"\x89"])
    return _global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def state_pickle(tensors):
    """{name: tensor(...)} -> a pickled dict."""
    return b"\x80\x02}(" + b"".join(_str(name) + value for name, value in tensors.items()) + b"u."


def zip_file(path, tensors, storages, compress=False):
    """torch.save's zip layout: storages is {key: bytes, or (chunk, repeats) streamed}."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method, compresslevel=1 if compress else None) as archive:
        archive.writestr("archive/data.pkl", state_pickle(tensors))
        archive.writestr("archive/byteorder", "little")
        for key, content in storages.items():
            with archive.open(f"archive/data/{key}", "w", force_zip64=True) as out:
                for chunk in ([content] if isinstance(content, bytes) else [content[0]] * content[1]):
                    out.write(chunk)


def legacy_file(path, tensors, storages):
    """The older sequence: magic, protocol, system info, the object, its storage keys, then each storage as an
    int64 element count and its bytes. storages is {key: (count written, bytes)}."""
    with open(path, "wb") as out:
        for header in (pth.LEGACY_MAGIC, pth.LEGACY_PROTOCOL, {"little_endian": True}):
            out.write(pickle.dumps(header, protocol=2))
        out.write(state_pickle(tensors))
        out.write(pickle.dumps(list(storages), protocol=2))
        for count, raw in storages.values():
            out.write(struct.pack("<q", count) + raw)
