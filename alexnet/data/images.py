"""Decoding any source image (greyscale, CMYK, palette, RGBA, 16-bit: all ImageNet holds) to the
paper's 256x256 RGB patch (section 2: shorter side rescaled to 256, central patch), and storing it.
"""

import io

import numpy as np
from PIL import Image

try:  # libjpeg-turbo called directly: the same pixels as Pillow's decoder, in half the time
    import simplejpeg
except ImportError:  # pragma: no cover - Pillow decodes
    simplejpeg = None

# What every Pillow build reads, where a folder is listed by name (`alexnet prepare` reads contents).
IMAGE_SUFFIXES = frozenset(".jpg .jpeg .png .bmp .gif .ppm .pgm .pbm .tif .tiff .webp".split())

# A source file over this many bytes per pixel of the budget (uncompressed RGBA) is not read at all.
FILE_BYTES_PER_PIXEL = 4
BAND = 256  # rows converted at a time from 16/32-bit greyscale: its float temporaries stay small


class BadImage(Exception):
    """A source entry that gives no image (not decodable, too large, not a file); the message says why."""


def open_image(data: bytes) -> Image.Image:
    """The image in ``data``, identified by its content (not its name), or BadImage."""
    if not data:
        raise BadImage("empty file")
    try:
        return Image.open(io.BytesIO(data))
    except Image.UnidentifiedImageError:
        raise BadImage("not an image (no known image format)") from None
    except Image.DecompressionBombError as err:
        raise BadImage(f"too large: {err}") from None
    except (OSError, ValueError) as err:
        raise BadImage(f"truncated or corrupt image: {err}") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB: transparency over white, 16- and 32-bit greyscale scaled from its full range."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        top = 65535.0 if image.getextrema()[1] > 255 else 255.0
        width, height = image.size
        grey = np.empty((height, width), np.uint8)
        for start in range(0, height, BAND):  # band by band: no copy of the whole image as numbers
            band = np.asarray(image.crop((0, start, width, min(start + BAND, height))), dtype=np.float64)
            grey[start:start + BAND] = np.clip(np.rint(band * (255.0 / top)), 0, 255)
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba)  # an RGBA mask is its alpha channel: no copy of it made
        return white
    return image.convert("RGB")


def check_pixels(image: Image.Image, max_pixels: int | None, claimed: tuple[int, int] | None = None) -> None:
    """BadImage when ``image``'s header says over ``max_pixels`` pixels; ``claimed``: its size before draft mode."""
    width, height = image.size
    claimed = claimed or image.size
    if max_pixels is not None and width * height > max_pixels:
        reduced = f", {width}x{height} at reduced scale," if image.size != claimed else ""
        raise BadImage(f"too large: {claimed[0]}x{claimed[1]} pixels{reduced} above the pixel budget of "
                       f"{max_pixels} (--max-pixels)")


def centre_patch(image: Image.Image, size: int = 256, max_pixels: int | None = None) -> np.ndarray:
    """The central ``size`` x ``size`` patch after rescaling the shorter side to ``size`` (section 2).
    Only the kept square is resampled, JPEGs in draft mode; over ``max_pixels`` pixels: BadImage."""
    claimed = image.size
    if image.format == "JPEG":
        image.draft("RGB", (size, size))  # keeps both sides >= size
    check_pixels(image, max_pixels, claimed)
    width, height = image.size
    short = min(width, height)
    # Offsets of the central patch in the rescaled image, mapped back to source pixels.
    left = (round(width * size / short) - size) // 2 * short / size
    top = (round(height * size / short) - size) // 2 * short / size
    try:  # the pixels are read here: truncated or corrupt data shows up now
        patch = to_rgb(image).resize((size, size), Image.BILINEAR, box=(left, top, left + short, top + short))
    except (OSError, ValueError, SyntaxError) as err:
        raise BadImage(f"truncated or corrupt image: {err}") from None
    return np.asarray(patch)


def encode(patch: np.ndarray, encoding: str, quality: int = 90) -> bytes:
    """``patch`` (HxWx3 uint8) as stored in a shard: a JPEG file or a ``.npy`` file."""
    buffer = io.BytesIO()
    if encoding == "jpeg":
        Image.fromarray(patch).save(buffer, "JPEG", quality=quality)
    else:
        np.save(buffer, patch, allow_pickle=False)
    return buffer.getvalue()


def jpeg_library() -> str:
    """The library that decodes stored JPEGs here: ``simplejpeg`` or, without it, ``pillow``."""
    return "pillow" if simplejpeg is None else "simplejpeg"


def decode(data: bytes, extension: str) -> np.ndarray:
    """A stored sample (``.jpg`` or ``.npy`` bytes) as an HxWx3 uint8 array: JPEGs by simplejpeg when
    installed (Pillow's pixels, twice as fast: BENCHMARKS.md), else or when it fails by Pillow."""
    if extension == "npy":
        return np.load(io.BytesIO(data), allow_pickle=False)
    if simplejpeg is not None:
        try:
            return simplejpeg.decode_jpeg(data, colorspace="RGB")
        except ValueError:  # not a JPEG libjpeg-turbo reads: Pillow knows more formats
            pass
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))
