"""Photos as phones make them, built with Pillow: a JPEG carrying EXIF GPS and a camera model."""

from __future__ import annotations

import io

from PIL import Image
from PIL.TiffImagePlugin import IFDRational

CAMERA = "PhanAnhCam X9 Pro"
OWNER = "Nguyen Van Chup"


def _dms(value: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    degrees = int(value)
    minutes_full = (value - degrees) * 60
    minutes = int(minutes_full)
    seconds = round((minutes_full - minutes) * 60 * 1000)
    return IFDRational(degrees), IFDRational(minutes), IFDRational(seconds, 1000)


def photo(
    fmt: str = "JPEG",
    *,
    gps: tuple[float, float] | None = None,
    size: tuple[int, int] = (320, 240),
    colour: tuple[int, int, int] = (180, 120, 60),
) -> bytes:
    """Return a photo in `fmt` with EXIF (camera, owner, time and, if given, GPS)."""
    image = Image.new("RGB", size, colour)
    exif = Image.Exif()
    exif[0x010F] = "PhanAnh"  # Make
    exif[0x0110] = CAMERA  # Model
    exif[0x013B] = OWNER  # Artist
    exif[0x0132] = "2026:11:20 09:15:00"  # DateTime
    if gps is not None:
        lat, lon = gps
        exif[0x8825] = {
            1: "N" if lat >= 0 else "S",
            2: _dms(abs(lat)),
            3: "E" if lon >= 0 else "W",
            4: _dms(abs(lon)),
        }
    out = io.BytesIO()
    image.save(out, fmt, exif=exif.tobytes())
    data = out.getvalue()
    assert CAMERA.encode() in data  # the metadata really is in the original
    return data


def metadata_left(content: bytes) -> list[str]:
    """Return what identifying metadata a stored photo still carries (empty when clean)."""
    found = []
    image = Image.open(io.BytesIO(content))
    if dict(image.getexif()):
        found.append("exif")
    for key in ("exif", "xmp", "XML:com.adobe.xmp", "icc_profile", "comment"):
        if key in image.info:
            found.append(key)
    for text in (CAMERA, OWNER, "PhanAnh", "2026:11:20"):
        if text.encode() in content:
            found.append(text)
    return found
