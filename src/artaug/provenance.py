"""What made an output: library versions and model identities, recorded in trails and PNGs."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from artaug.files import file_digest


def versions() -> dict[str, str]:
    out = {}
    for name in ("artaug", "torch", "diffusers", "transformers", "peft"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


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
