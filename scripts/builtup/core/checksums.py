"""sha256 checksums of files, kept beside them in ``<file>.sha256`` (sha256sum's format)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from builtup.core.errors import InputError


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_path(path: str | Path) -> Path:
    return Path(f"{path}.sha256")


def verified(path: str | Path) -> Path:
    """``path`` after checking it against its ``.sha256`` (when there is one)."""
    path = Path(path)
    sidecar = checksum_path(path)
    if path.is_file() and sidecar.is_file():
        expected = sidecar.read_bytes().split()[:1]
        if not expected or not re.fullmatch(rb"[0-9a-f]{64}", expected[0]):
            raise InputError(sidecar, "is not a sha256 checksum (64 hex digits, then the name)")
        if sha256_of(path) != expected[0].decode():
            raise InputError(path, f"sha256 differs from {sidecar.name}: corrupt or replaced")
    return path
