"""TFRecord files written through Beam's FileSystems, so gs:// honours STORAGE_EMULATOR_HOST and Dataflow alike.

TensorFlow's own writer would reach gs:// only through its built-in Google endpoints.
"""
import struct

import google_crc32c
from apache_beam.io.filesystems import FileSystems


def _masked_crc(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def write_tfrecord(path, records):
    """Write serialized records in TFRecord framing (length, crc, data, crc); returns (records, bytes) written."""
    count = size = 0
    with FileSystems.create(path, mime_type="application/octet-stream", compression_type="uncompressed") as f:
        for record in records:
            length = struct.pack("<Q", len(record))
            framed = length + _masked_crc(length) + record + _masked_crc(record)
            f.write(framed)
            count, size = count + 1, size + len(framed)
    return count, size
