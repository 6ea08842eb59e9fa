"""Export a store's pairs to the layouts trainers already read, each with a provenance sidecar.

- ``imagefolder``: ``train/metadata.jsonl`` with ``before_file_name`` / ``after_file_name`` columns, so
  ``datasets.load_dataset("imagefolder", data_dir=OUT)`` yields one row per pair with two image columns;
- ``kohya`` (also read by ai-toolkit): ``before/`` and ``after/``, each image with a same-stem ``.txt`` caption; the
  two folders are the two datasets of differential LoRA training, paired by file stem;
- ``webdataset``: ``pairs-000000.tar`` shards, one sample per pair (``KEY.before.png``, ``KEY.after.png``,
  ``KEY.txt``, ``KEY.json``).

Every export also writes ``artaug_pairs.jsonl`` (one line per pair: its files in this export, its files in the store,
prompt, seed, scores, filter verdicts, and the prompt's whole trail: model ids and file hashes, raw critiques, edits,
decisions, cost) and ``artaug_export.json`` (where it came from, when, how many).

What is exported: the accepted pairs (a person accepted them, or nobody reviewed them and the filters kept them);
``kept_only=False`` adds the pairs the filters dropped. A pair a person rejected is never exported.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from artaug.synth.store import PairRecord, Store

ExportFormat = Literal["imagefolder", "kohya", "webdataset"]
FORMATS: tuple[str, ...] = ("imagefolder", "kohya", "webdataset")
SIDECAR = "artaug_pairs.jsonl"
MANIFEST = "artaug_export.json"


def export(
    store_dir: str | Path,
    out_dir: str | Path,
    format: ExportFormat,
    *,
    kept_only: bool = True,
    shard_size: int = 1000,
) -> Path:
    """Export the pairs of ``store_dir`` into the new or empty folder ``out_dir``; returns ``out_dir``.

    The export is written into a temporary sibling folder and renamed into place at the end, so a failed export (a
    full disk, a damaged store) leaves nothing behind and can simply be run again.
    """
    # 1. check inputs; read the store (read-only) before anything is written
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {FORMATS}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder; export into a new folder")
    with Store(store_dir, readonly=True) as store:
        pairs = store.pairs(kept_only=kept_only, include_rejected=False)
        trails = {pid: store.trail(pid) for pid in {p.meta["prompt_id"] for p in pairs}}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        _write(pairs, trails, tmp, format, shard_size, store_dir, kept_only)
        if out.is_dir():
            out.rmdir()  # empty (checked above): the finished export takes its place
        tmp.chmod(0o755)  # mkdtemp's folders are private; an export is meant to be read
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write(
    pairs: list[PairRecord],
    trails: dict[str, Any],
    out: Path,
    format: str,
    shard_size: int,
    store_dir: str | Path,
    kept_only: bool,
) -> None:
    # 2. write the layout; each writer returns, per pair, where its before/after went inside the export
    writer = {"imagefolder": _imagefolder, "kohya": _kohya, "webdataset": _webdataset}[format]
    files = writer(pairs, out, shard_size)

    # 3. sidecar: pair links and provenance (the prompt's whole trail: models, critiques, decisions, cost), one line
    #    per pair, whatever the layout
    with (out / SIDECAR).open("w", encoding="utf-8") as f:
        for pair, where in zip(pairs, files, strict=True):
            row = _sidecar_row(pair, where) | {"trail": trails[pair.meta["prompt_id"]]}
            f.write(json.dumps(row, default=str) + "\n")
    manifest = {
        "format": format,
        "store": str(Path(store_dir).resolve()),
        "pairs": len(pairs),
        "kept_only": kept_only,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "artaug": _version(),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _imagefolder(pairs: list[PairRecord], out: Path, shard_size: int) -> list[dict[str, str]]:
    split = out / "train"
    split.mkdir()
    files = []
    with (split / "metadata.jsonl").open("w", encoding="utf-8") as f:
        for pair in pairs:
            stem = pair.meta["stem"]
            names = {"before": f"{stem}_before.png", "after": f"{stem}_after.png"}
            shutil.copyfile(pair.before, split / names["before"])
            shutil.copyfile(pair.after, split / names["after"])
            row = {
                "before_file_name": names["before"],
                "after_file_name": names["after"],
                "pair_id": pair.id,
                "prompt": pair.prompt,
                "seed": pair.seed,
                "kept": pair.kept,
                "accepted": pair.accepted,
                "provenance": pair.provenance,
                # One JSON string, not nested columns: score names differ between judges and runs.
                "scores": json.dumps(pair.scores, sort_keys=True),
            }
            f.write(json.dumps(row) + "\n")
            files.append({k: f"train/{v}" for k, v in names.items()})
    return files


def _kohya(pairs: list[PairRecord], out: Path, shard_size: int) -> list[dict[str, str]]:
    files = []
    for side in ("before", "after"):
        (out / side).mkdir()
    for pair in pairs:
        stem = pair.meta["stem"]
        for side, source in (("before", pair.before), ("after", pair.after)):
            shutil.copyfile(source, out / side / f"{stem}.png")
            (out / side / f"{stem}.txt").write_text(pair.prompt + "\n", encoding="utf-8")
        files.append({"before": f"before/{stem}.png", "after": f"after/{stem}.png"})
    return files


def _webdataset(pairs: list[PairRecord], out: Path, shard_size: int) -> list[dict[str, str]]:
    files = []
    for start in range(0, max(len(pairs), 1), shard_size):
        shard = f"pairs-{start // shard_size:06d}.tar"
        with tarfile.open(out / shard, "w") as tar:
            for pair in pairs[start : start + shard_size]:
                # WebDataset splits a member name at the first dot of its basename: keys must not contain dots.
                key = pair.meta["stem"].replace(".", "_")
                info = {"pair_id": pair.id, "prompt": pair.prompt, "seed": pair.seed, "scores": pair.scores}
                _add_bytes(tar, f"{key}.before.png", pair.before.read_bytes())
                _add_bytes(tar, f"{key}.after.png", pair.after.read_bytes())
                _add_bytes(tar, f"{key}.txt", pair.prompt.encode())
                _add_bytes(tar, f"{key}.json", json.dumps(info, default=str).encode())
                files.append({"before": f"{shard}:{key}.before.png", "after": f"{shard}:{key}.after.png"})
    return files


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _sidecar_row(pair: PairRecord, where: dict[str, str]) -> dict[str, Any]:
    return {
        "pair_id": pair.id,
        "prompt": pair.prompt,
        "seed": pair.seed,
        "kept": pair.kept,
        "accepted": pair.accepted,
        "provenance": pair.provenance,
        "review": pair.review,
        "before": where["before"],
        "after": where["after"],
        "store_before": str(pair.before),
        "store_after": str(pair.after),
        "scores": pair.scores,
        "meta": pair.meta,
    }


def _version() -> str:
    from artaug.provenance import versions

    return versions()["artaug"]
