"""What made an output: library versions and model identities, recorded in trails and PNGs."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

# Weight files can be tens of GB: above this size only their first and last MiB are hashed (with the size).
FULL_HASH_LIMIT = 64 * 1024 * 1024
_EDGE = 1024 * 1024


def versions() -> dict[str, str]:
    out = {}
    for name in ("artaug", "torch", "diffusers", "transformers", "peft"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def file_digest(path: Path) -> str:
    """sha256 of a file; for files above ``FULL_HASH_LIMIT`` of its size, first and last MiB ("partial:" prefix)."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        if size <= FULL_HASH_LIMIT:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
            return digest.hexdigest()
        digest.update(str(size).encode())
        digest.update(handle.read(_EDGE))
        handle.seek(size - _EDGE)
        digest.update(handle.read(_EDGE))
    return "partial:" + digest.hexdigest()


@lru_cache(maxsize=16)
def _folder_files(folder: str, stamp: float) -> dict[str, str]:
    root = Path(folder)
    return {str(p.relative_to(root)): file_digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


def describe_model(spec: str) -> dict[str, Any]:
    """``{"id": spec}`` for a hub id or URL; for a local folder also the digest of every file in it."""
    path = Path(spec)
    if not spec or not path.is_dir():
        return {"id": spec}
    files = _folder_files(str(path.resolve()), path.stat().st_mtime)
    combined = hashlib.sha256("".join(f"{k}:{v}\n" for k, v in files.items()).encode()).hexdigest()
    return {"id": spec, "folder_digest": combined, "files": files}
