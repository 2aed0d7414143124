"""Cleaning citizen photos: the time to check, read EXIF GPS from and re-encode without metadata
a phone photo (12 MP JPEG with EXIF, 4 MP PNG, 12 MP WebP), and the stored size.

    PYTHONPATH=src python bench/bench_citizen_photos.py [--runs 10]
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image

from cityops.citizen import photos
from harness import percentile


def _phone_photo(fmt: str, size: tuple[int, int]) -> bytes:
    # Noise compresses like a real scene (a flat colour would flatter the encoder).
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    pixels[:, :, 1] //= 2
    image = Image.fromarray(pixels, "RGB")
    exif = Image.Exif()
    exif[0x0110] = "Bench Phone 12"
    exif[0x8825] = {1: "N", 2: (10.0, 56.0, 16.8), 3: "E", 4: (106.0, 50.0, 6.0)}
    out = io.BytesIO()
    image.save(out, fmt, exif=exif.tobytes(), quality=90)
    return out.getvalue()


def main() -> None:
    """Print the cleaning time (median, p95) and sizes for each kind of photo."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    for fmt, size in (("JPEG", (4000, 3000)), ("PNG", (2304, 1728)), ("WEBP", (4000, 3000))):
        content = _phone_photo(fmt, size)
        timings = []
        for _ in range(args.runs):
            started = time.perf_counter()
            cleaned = photos.clean(content)
            timings.append(time.perf_counter() - started)
        assert cleaned.gps is not None
        print(
            f"{fmt:5} {size[0]}x{size[1]}: {len(content) / 1e6:5.1f} MB -> "
            f"{len(cleaned.content) / 1e6:4.1f} MB ({cleaned.width}x{cleaned.height}), "
            f"clean median {percentile(timings, 50) * 1000:6.0f} ms, "
            f"p95 {percentile(timings, 95) * 1000:6.0f} ms"
        )


if __name__ == "__main__":
    main()
