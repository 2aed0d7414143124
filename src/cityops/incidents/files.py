"""Attachment files: the type is sniffed from the first bytes (never taken from the client), and
the content is stored once under its SHA-256 in the data folder."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import unicodedata
from pathlib import Path

from cityops.core.errors import DomainError

ATTACHMENTS_DIR = "attachments"
# Longest file name kept (UTF-8 characters); the extension is preserved when shortening.
MAX_NAME = 200
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

# Images a phone or camera produces, and PDF documents; everything else is refused.
ALLOWED_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "application/pdf")
EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "application/pdf": ".pdf",
}


class PayloadTooLarge(DomainError):
    """The upload is larger than the configured limit."""

    status, slug, title_key = 413, "payload-too-large", "error.payload_too_large"


class UnsupportedMediaType(DomainError):
    """The upload is not of an accepted type."""

    status, slug, title_key = 415, "unsupported-media-type", "error.unsupported_media_type"


def too_large(limit: int) -> PayloadTooLarge:
    """The error for an upload over `limit` bytes."""
    return PayloadTooLarge(
        "incidents.attachment.too_large", limit=limit, megabytes=f"{limit / 1048576:.1f}"
    )


def sniff(head: bytes) -> str | None:
    """Return the media type of a file from its first bytes, if it is an allowed type."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    return None


def clean_name(name: str | None, content_type: str) -> str:
    """Return a safe display name: no path, no control or reserved characters, bounded length."""
    base = unicodedata.normalize("NFC", (name or "").replace("\\", "/").rsplit("/", 1)[-1])
    base = _UNSAFE_NAME.sub("_", base).strip(" .")
    if not base:
        base = "tep-dinh-kem" + EXTENSIONS.get(content_type, "")
    if len(base) > MAX_NAME:
        stem, dot, ext = base.rpartition(".")
        ext = dot + ext if stem and len(ext) <= 10 else ""
        base = base[: MAX_NAME - len(ext)] + ext
    return base


def digest(content: bytes) -> str:
    """Return the SHA-256 of a content, as hex."""
    return hashlib.sha256(content).hexdigest()


def path_of(data_dir: Path, sha256: str) -> Path:
    """Return where a content with this SHA-256 is stored (two levels of fan-out)."""
    if not _SHA256.match(sha256):
        raise ValueError("not a SHA-256 hex digest")
    return data_dir / ATTACHMENTS_DIR / sha256[:2] / sha256[2:4] / sha256


def store(data_dir: Path, content: bytes) -> str:
    """Store a content under its SHA-256 (once; atomically) and return the digest."""
    sha256 = digest(content)
    target = path_of(data_dir, sha256)
    if target.exists():
        return sha256
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target, then rename: a reader never sees a half-written file.
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return sha256
