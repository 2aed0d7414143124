"""Photos sent with a citizen report: the type is sniffed from the bytes (JPEG, PNG or WebP only),
the EXIF GPS position is read (it locates a report the reporter did not pin), and the picture is
re-encoded from its pixels alone, so no EXIF, XMP, ICC or comment field (camera, owner, time,
place) survives in what is stored and served.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from cityops.incidents import files

MAX_PHOTOS = 3
# Only what phones produce; GIF and PDF (accepted on incidents) are refused for citizens.
ALLOWED_TYPES = ("image/jpeg", "image/png", "image/webp")
_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
# A 50-megapixel phone photo is the largest expected; more is a decompression bomb.
MAX_PIXELS = 60_000_000
# Stored photos are scaled down to this longest side: enough to see a pothole, not a face.
MAX_SIDE = 2560
_GPS_IFD = 0x8825
_LAT_REF, _LAT, _LON_REF, _LON = 1, 2, 3, 4


class PhotoError(ValueError):
    """A file that is not a usable photo; `key` is the message key for the client."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass(frozen=True, slots=True)
class Photo:
    """A photo ready to store: clean bytes, its type and size, and where it was taken."""

    content: bytes
    content_type: str
    width: int
    height: int
    gps: tuple[float, float] | None


def _degrees(value: Any, ref: Any, negative: str) -> float | None:
    try:
        parts = [float(v) for v in value]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if len(parts) != 3 or not all(math.isfinite(p) for p in parts):
        return None
    degrees = parts[0] + parts[1] / 60 + parts[2] / 3600
    text = ref.decode("ascii", "replace") if isinstance(ref, bytes) else str(ref or "")
    return -degrees if text.strip().upper().startswith(negative) else degrees


def gps_of(image: Image.Image) -> tuple[float, float] | None:
    """Return the (lat, lon) an image's EXIF GPS block records, if any and plausible."""
    try:
        gps = image.getexif().get_ifd(_GPS_IFD)
    except (AttributeError, KeyError, ValueError, TypeError, OSError):
        return None
    if _LAT not in gps or _LON not in gps:
        return None
    lat = _degrees(gps[_LAT], gps.get(_LAT_REF), "S")
    lon = _degrees(gps[_LON], gps.get(_LON_REF), "W")
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    if lat == 0 and lon == 0:  # a camera without a fix writes zeros
        return None
    return lat, lon


def clean(content: bytes) -> Photo:
    """Check a photo and return it re-encoded without any metadata (PhotoError otherwise)."""
    content_type = files.sniff(content[:32])
    if content_type not in ALLOWED_TYPES:
        raise PhotoError("citizen.photo.type")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return _reencode(content, content_type)
        except PhotoError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError):
            raise PhotoError("citizen.photo.too_big") from None
        # Whatever a malformed file makes a decoder raise, the answer is the same 422.
        except (
            UnidentifiedImageError,
            OSError,
            ValueError,
            SyntaxError,
            EOFError,
            IndexError,
            KeyError,
            TypeError,
            ZeroDivisionError,
            struct.error,
        ):
            raise PhotoError("citizen.photo.unreadable") from None


def _reencode(content: bytes, content_type: str) -> Photo:
    fmt = _FORMATS[content_type]
    image = Image.open(io.BytesIO(content))
    if image.format != fmt:
        raise PhotoError("citizen.photo.type")
    if image.width * image.height > MAX_PIXELS:
        raise PhotoError("citizen.photo.too_big")
    gps = gps_of(image)
    # Keep the picture upright once the orientation tag is gone.
    upright = ImageOps.exif_transpose(image)
    upright.load()
    has_alpha = upright.mode in ("RGBA", "LA", "PA") or (
        upright.mode == "P" and "transparency" in upright.info
    )
    if fmt == "JPEG" or not has_alpha:
        mode = "L" if upright.mode in ("L", "1") else "RGB"
    else:
        mode = "RGBA"
    converted = upright.convert(mode)
    # A new image from the pixels alone: nothing of the original's `info` can follow it.
    pixels = Image.frombytes(mode, converted.size, converted.tobytes())
    pixels.thumbnail((MAX_SIDE, MAX_SIDE))
    out = io.BytesIO()
    if fmt == "JPEG":
        pixels.save(out, "JPEG", quality=85)
    elif fmt == "WEBP":
        # method 0: the fastest of libwebp's efforts, about half the time of the default.
        pixels.save(out, "WEBP", quality=85, method=0)
    else:
        pixels.save(out, "PNG")
    return Photo(
        content=out.getvalue(),
        content_type=content_type,
        width=pixels.width,
        height=pixels.height,
        gps=gps,
    )
