"""Files in and out, written once for every part: atomic writes, TOML and bounded JSON, confined paths, safe images.

Anything artaug reads back from disk may have been written or edited by someone else (a ledger, a trail, a cache
entry, a config, an image), so every reader here is bounded: JSON by size and nesting depth, images by pixel count
before decoding, and paths named inside a file by the folder they must stay in. Every writer is atomic: a reader
(or a crash) sees the old file or the new one, never half of one.

No torch here: the config, the store and the CLI's checks import this before any model code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

MAX_JSON_BYTES = 64 * 1024 * 1024  # a trail or a ledger row is kilobytes; this only stops a hostile file
MAX_JSON_DEPTH = 64  # artaug's own JSON nests at most ~6 levels
MAX_IMAGE_PIXELS = 64 * 1024 * 1024  # 8192 x 8192; larger files are refused before they are decoded
# Weight files can be tens of GB: above this size only their first and last MiB are hashed (with the size).
FULL_HASH_LIMIT = 64 * 1024 * 1024
_EDGE = 1024 * 1024


class UnsafePath(ValueError):
    """A path read from a file points outside the folder it must stay in."""


# ---------------------------------------------------------------------------------------------------- writing


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", *, fsync: bool = True) -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as file:
            yield file
            file.flush()
            if fsync:
                os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[IO[bytes]], None], **kw: Any) -> Path:
    """Write ``data`` (bytes, text, or a function that writes to a binary file) to ``path`` atomically."""
    with atomic_open(path, "wb", **kw) as file:
        if callable(data):
            data(file)
        else:
            file.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any, *, indent: int | None = 2) -> Path:
    text = json.dumps(data, indent=indent, ensure_ascii=False, default=str, allow_nan=False)
    return atomic_write(path, text + "\n")


def write_toml(path: str | os.PathLike, data: dict[str, Any]) -> Path:
    import tomli_w

    return atomic_write(path, tomli_w.dumps(data))


# ---------------------------------------------------------------------------------------------------- reading


def read_toml(path: str | os.PathLike, what: str = "config file") -> dict[str, Any]:
    """A TOML file as a dict; a missing, unreadable or invalid file is one ``ValueError``/``FileNotFoundError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{what} {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{what} {path} is not valid TOML: {error}") from None


def loads_json(text: str | bytes, *, where: str = "JSON", max_bytes: int = MAX_JSON_BYTES) -> Any:
    """``json.loads`` for text from elsewhere: bounded size and nesting depth, no NaN/Infinity; ``ValueError``."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{where} is not UTF-8 text") from None
    if len(text) > max_bytes:
        raise ValueError(f"{where} is {len(text):,} characters, more than the {max_bytes:,} allowed")
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{where} nests {depth} levels deep, more than the {MAX_JSON_DEPTH} allowed")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, NaN/Infinity, nesting the scan missed
        raise ValueError(f"{where} is not valid JSON ({error})") from None


def read_json(path: str | os.PathLike, *, what: str = "file", max_bytes: int = MAX_JSON_BYTES) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{what} {path} is {size:,} bytes, more than the {max_bytes:,} allowed")
    return loads_json(path.read_bytes(), where=f"{what} {path}", max_bytes=max_bytes)


def json_depth(text: str) -> int:
    """The deepest nesting of ``[`` / ``{`` outside strings (linear scan; the text need not be valid JSON)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


# ---------------------------------------------------------------------------------------------------- paths


def confined(root: str | os.PathLike, relative: str, *, what: str = "path") -> Path:
    """``root / relative``, refused (``UnsafePath``) unless it stays inside ``root`` after resolving links.

    For paths *read from a file* (a ledger row, a trail, a cache entry): absolute paths, ``..`` and links that lead
    out of the folder are an error, never followed.
    """
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        raise UnsafePath(f"{what} {relative!r} is not a relative file name")
    if os.path.isabs(relative) or relative.startswith("~"):
        raise UnsafePath(f"{what} {relative!r} is absolute; only names inside {root} are allowed")
    base = Path(root).resolve()
    target = (base / relative).resolve()
    if target != base and base not in target.parents:
        raise UnsafePath(f"{what} {relative!r} leads outside {base}")
    return target


# ---------------------------------------------------------------------------------------------------- images


def open_image(path: str | os.PathLike, *, what: str = "image", max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """A fully loaded PIL image, or a ``ValueError`` naming the file: missing, not an image, truncated, or larger
    than ``max_pixels`` (checked from the header, before any pixel is decoded: no decompression bombs)."""
    import warnings

    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ValueError(f"{what} {path} is {width}x{height}, more than {max_pixels:,} pixels")
                image.load()
                return image.copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(f"{what} {path} is too large to decode safely ({error})") from None
    except (OSError, SyntaxError, Image.UnidentifiedImageError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(f"{what} {path} is not a readable image ({error})") from None


def check_image(
    path: str | os.PathLike, *, what: str = "image", max_pixels: int = MAX_IMAGE_PIXELS
) -> tuple[int, int]:
    """``(width, height)`` of an image file after checking, without decoding its pixels, that it is a complete image
    of at most ``max_pixels`` (``Image.verify``: structure and checksums); ``ValueError`` naming the file if not."""
    import warnings

    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                size = image.size
                if size[0] * size[1] > max_pixels:
                    raise ValueError(f"{what} {path} is {size[0]}x{size[1]}, more than {max_pixels:,} pixels")
                image.verify()
        return size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(f"{what} {path} is too large to decode safely ({error})") from None
    except (OSError, SyntaxError, Image.UnidentifiedImageError) as error:
        raise ValueError(f"{what} {path} is not a readable image ({error})") from None


# ---------------------------------------------------------------------------------------------------- hashing


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file; above ``FULL_HASH_LIMIT`` bytes, of its size and first and last MiB ("partial:" prefix)."""
    path = Path(path)
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
