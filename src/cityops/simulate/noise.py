"""Deterministic randomness: every draw is a pure function of (seed, key parts).

The simulator keeps no state between samples: a value at an instant is computed from hashes of
the seed, the asset and the time, so a back-fill and a live stream agree and a re-run repeats.
"""

from __future__ import annotations

import hashlib
import math
import struct

_SCALE = 1.0 / float(1 << 53)


def u01(seed: int, *parts: object) -> float:
    """Return a uniform number in [0, 1) determined by the seed and the key parts."""
    digest = hashlib.blake2b(
        "\x1f".join(str(p) for p in (seed, *parts)).encode(), digest_size=8
    ).digest()
    (number,) = struct.unpack("<Q", digest)
    return float(number >> 11) * _SCALE


def signed(seed: int, *parts: object) -> float:
    """Return a uniform number in [-1, 1)."""
    return 2.0 * u01(seed, *parts) - 1.0


def gauss(seed: int, *parts: object) -> float:
    """Return a standard normal number (Box–Muller over two hashed uniforms)."""
    a = max(u01(seed, *parts, "g1"), 1e-12)
    b = u01(seed, *parts, "g2")
    return math.sqrt(-2.0 * math.log(a)) * math.cos(2.0 * math.pi * b)


def smooth(seed: int, key: str, t: float, period: float) -> float:
    """Return value noise in [-1, 1] varying smoothly over `period` seconds at epoch `t`."""
    k = math.floor(t / period)
    frac = t / period - k
    a = signed(seed, key, k)
    b = signed(seed, key, k + 1)
    # Cosine easing: continuous and flat at the knots, so no visible corners in charts.
    w = (1.0 - math.cos(math.pi * frac)) / 2.0
    return a + (b - a) * w


def jitter(seed: int, key: str, t: float, spread: float) -> float:
    """Return a measurement-noise factor 1 ± spread, different at every second."""
    return 1.0 + spread * signed(seed, key, "j", int(t))
