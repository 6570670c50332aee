"""Turn one raw image file into the bytes we store, or say why it cannot be used.

Pure functions of bytes in, bytes out: the Beam job, the benchmark's plain loop and `translate` share them.
"""
import dataclasses
import hashlib
import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

# Outcome reasons, as they appear in the manifest and in rejected.jsonl.
EMPTY, NOT_AN_IMAGE, CORRUPT, TOO_SMALL, TOO_LARGE = "empty", "not_an_image", "corrupt", "too_small", "too_large"
HIDDEN, NOT_IMAGE_EXTENSION = "hidden", "not_image_extension"
NOT_REGULAR_FILE = "not_a_regular_file"  # a FIFO, socket or device named like an image: opening it could block
CANNOT_ENCODE = "cannot_encode"  # decoded, but the stored format's encoder refused it
JPEG_MAX_SIDE = 65_500  # libjpeg's limit on either side, as Pillow enforces it when encoding


@dataclasses.dataclass(frozen=True)
class ImageOptions:
    max_size: int = 286  # the stored shorter side is at most this (the reference's load size); never upscaled
    min_side: int = 32
    max_pixels: int = 100_000_000  # decompression-bomb guard, checked from the header before decoding
    image_format: str = "jpeg"
    jpeg_quality: int = 95


@dataclasses.dataclass(frozen=True)
class StoredImage:
    encoded: bytes
    image_format: str
    height: int
    width: int


class Rejected(Exception):
    def __init__(self, reason, detail):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def skip_reason(relative_path: str):
    """Why a file found under a dataset root is not even read (None: it is an image candidate)."""
    parts = relative_path.replace("\\", "/").split("/")
    if any(part.startswith(".") for part in parts):
        return HIDDEN
    if os.path.splitext(parts[-1])[1].lower() not in IMAGE_EXTENSIONS:
        return NOT_IMAGE_EXTENSION
    return None


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB; transparency is composited on white."""
    if img.mode == "F" or img.mode.startswith("I"):
        # 16/32-bit grayscale: PIL's own convert("L") clips to 255 instead of scaling the range down.
        arr = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I"):
            arr = arr / 257.0
        elif arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        img = Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), "L")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def decode(data: bytes, max_pixels: int, shorter_side_at_least=None) -> Image.Image:
    """Bytes -> upright RGB image (EXIF orientation applied), or Rejected.

    With `shorter_side_at_least`, a JPEG much larger than that is decoded at 1/2, 1/4 or 1/8 scale in the DCT
    domain (never below that size): far cheaper than decoding it whole and resizing (benchmarks/RESULTS.md,
    "Preprocessing").
    """
    if not data:
        raise Rejected(EMPTY, "zero-byte file")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise Rejected(TOO_LARGE, str(err)) from None
        except Image.UnidentifiedImageError:
            raise Rejected(NOT_AN_IMAGE, "no image decoder recognises the content") from None
        width, height = img.size
        if width * height > max_pixels:
            raise Rejected(TOO_LARGE, f"{width}x{height} exceeds the --max_pixels limit of {max_pixels}")
        short = min(width, height)
        if img.format == "JPEG" and shorter_side_at_least and short >= 2 * shorter_side_at_least:
            scale = shorter_side_at_least / short
            img.draft(None, (int(width * scale + 1), int(height * scale + 1)))
        try:
            img.seek(0)  # animated GIF/WebP: the first frame
            img.load()
            img = ImageOps.exif_transpose(img)
        except (OSError, SyntaxError, ValueError, EOFError) as err:
            raise Rejected(CORRUPT, f"cannot decode: {err}") from None
    return to_rgb(img)


def resize_shorter_side(img: Image.Image, max_size: int) -> Image.Image:
    """Downscale (bicubic, as the reference) so the shorter side is at most max_size."""
    width, height = img.size
    short = min(width, height)
    if short <= max_size:
        return img
    scale = max_size / short
    size = (max(max_size, round(width * scale)), max(max_size, round(height * scale)))
    return img.resize(size, Image.Resampling.BICUBIC)


def encode(img: Image.Image, image_format: str, jpeg_quality: int) -> bytes:
    out = io.BytesIO()
    if image_format == "jpeg":
        img.save(out, format="JPEG", quality=jpeg_quality)
    else:
        img.save(out, format="PNG")
    return out.getvalue()


def prepare_image(data: bytes, options: ImageOptions) -> StoredImage:
    """The per-image work of the preprocessing job: validate, orient, convert, shrink, encode."""
    img = decode(data, options.max_pixels, shorter_side_at_least=options.max_size)
    if min(img.size) < options.min_side:
        raise Rejected(TOO_SMALL, f"{img.size[0]}x{img.size[1]} is below the --min_side of {options.min_side} px")
    img = resize_shorter_side(img, options.max_size)
    if options.image_format == "jpeg" and max(img.size) > JPEG_MAX_SIDE:
        raise Rejected(TOO_LARGE, f"{img.size[0]}x{img.size[1]} after shrinking: JPEG stores at most {JPEG_MAX_SIDE} "
                                  "px a side; preprocess with --image_format png to keep such images")
    try:
        encoded = encode(img, options.image_format, options.jpeg_quality)
    except (OSError, ValueError) as err:  # an image the encoder refuses must not fail the whole job
        raise Rejected(CANNOT_ENCODE, f"{img.size[0]}x{img.size[1]} as {options.image_format}: {err}") from None
    return StoredImage(encoded, options.image_format, height=img.size[1], width=img.size[0])
