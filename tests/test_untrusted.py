"""Files written by someone else: a tampered ledger, cache or trail, a locked or read-only store, a full disk.

Each test plants the file an attacker (or an accident) would, runs the reader, and checks that nothing outside the
folder was touched or read, that the error says what is wrong, and that nothing half-written is left.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artaug.cli import main
from artaug.critic import CachedCritic, RecordedCritic
from artaug.files import UnsafePath, confined, json_depth, loads_json
from artaug.synth.export import export
from artaug.synth.prompts import PromptRecord
from artaug.synth.stats import collect
from artaug.synth.store import LEDGER, PairDraft, Store, StoreLocked, read_pairs


def _image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8))


def _store(root: Path, n: int = 2) -> Path:
    with Store(root) as store:
        store.add_prompts([PromptRecord(f"p{i}", f"prompt {i}", i) for i in range(n)])
        for record in store.claim(n - 1):  # the last prompt stays pending
            store.commit(record.id, images={"r0": _image(record.seed), "r1": _image(record.seed + 50)},
                         pairs=[PairDraft(1, "r0", "r1", {"x.delta": 1.0}, True, [])], trail={"p": 1})  # fmt: skip
    return root


def _tamper(root: Path, sql: str, *args: object) -> None:
    db = sqlite3.connect(root / LEDGER)
    db.execute(sql, args)
    db.commit()
    db.close()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- a tampered ledger -----------------------------------------------------------------------------------------------


def test_a_ledger_folder_outside_the_store_is_never_cleared(tmp_path: Path) -> None:
    """``claim`` clears the claimed prompt's folder of crash leftovers: a ledger pointing it elsewhere must not."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    root = _store(tmp_path / "store")
    _tamper(root, "UPDATE prompts SET folder = ? WHERE id = 'p1'", "../../victim")
    with pytest.raises(ValueError, match="not a plain folder name"):
        Store(root)  # found on open, before a job could load a model or claim anything
    assert (victim / "precious.txt").read_text() == "keep me"
    assert main(["synth", "--resume", "--out", str(root), "--no-progress", "-q"]) == 2
    assert (victim / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("before", "/etc/passwd", "is absolute"),
        ("before", "../../../../etc/passwd", "leads outside"),
        ("after", "ledger.sqlite", "outside the store's images/ folder"),
    ],
)
def test_pair_paths_outside_the_store_are_refused(tmp_path: Path, column: str, value: str, message: str) -> None:
    root = _store(tmp_path / "store")
    _tamper(root, f"UPDATE pairs SET {column} = ?", value)
    out = tmp_path / "export"
    for reader in (lambda: read_pairs(root), lambda: export(root, out, "kohya"), lambda: collect(root)):
        with pytest.raises(ValueError, match=message):
            reader()
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["store"]  # nothing written, nothing copied


def test_a_ledger_folder_name_cannot_write_outside_an_export(tmp_path: Path) -> None:
    root = _store(tmp_path / "store")
    _tamper(root, "UPDATE prompts SET folder = ? WHERE id = 'p0'", "../../../outside")
    assert main(["synth", "export", str(root), "--format", "imagefolder", "--to", str(tmp_path / "x")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_deeply_nested_ledger_json_is_an_error_not_a_crash(tmp_path: Path) -> None:
    root = _store(tmp_path / "store")
    _tamper(root, "UPDATE pairs SET meta = ?", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="levels deep"):
        read_pairs(root)


# -- readers on read-only media, a locked store, a failed export, a full disk -----------------------------------------


@pytest.fixture
def readonly(tmp_path: Path):
    """A read-only view of a folder: a read-only bind mount (root) or permission bits (any other user)."""
    mounts: list[Path] = []

    def make(source: Path) -> Path:
        if os.geteuid() != 0:
            for path in [source, *source.rglob("*")]:
                path.chmod(path.stat().st_mode & ~0o222)
            return source
        view = tmp_path / f"{source.name}-ro"
        view.mkdir()
        done = subprocess.run(["mount", "--bind", str(source), str(view)], capture_output=True)
        if done.returncode == 0:
            mounts.append(view)
            done = subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"no read-only folder can be made here (root without mount rights): {done.stderr!r}")
        return view

    yield make
    for view in mounts:
        subprocess.run(["umount", str(view)], check=False)


def test_readers_work_on_a_read_only_store(tmp_path: Path, readonly, capsys) -> None:
    root = readonly(_store(tmp_path / "store"))
    with pytest.raises(OSError):
        (root / "probe").write_text("x")  # the view really is read-only
    assert len(read_pairs(root)) == 1 and collect(root).counts["done"] == 1
    assert main(["synth", "stats", str(root)]) == 0
    assert "is read-only; pass --png PATH" in capsys.readouterr().out
    assert main(["synth", "stats", str(root), "--png", str(tmp_path / "stats.png")]) == 0
    assert (tmp_path / "stats.png").stat().st_size > 0
    assert main(["synth", "export", str(root), "--format", "kohya", "--to", str(tmp_path / "exp")]) == 0
    assert len(list((tmp_path / "exp" / "after").glob("*.png"))) == 1
    from artaug.train.data import as_pairs

    assert len(as_pairs(read_pairs(root))) == 1  # what `artaug train` reads before it loads the painter


def test_readers_leave_no_file_in_the_store(tmp_path: Path) -> None:
    root = _store(tmp_path / "store")
    before = _tree(root)
    read_pairs(root)
    collect(root)
    export(root, tmp_path / "exp", "webdataset")
    assert _tree(root) == before


def test_a_locked_store_is_a_clear_error(tmp_path: Path) -> None:
    root = _store(tmp_path / "store")
    holder = sqlite3.connect(root / LEDGER, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreLocked, match="locked by another process"):
            Store(root, lock_timeout=0.2).claim(1)
        assert len(read_pairs(root)) == 1  # readers are not blocked by a writer
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_failed_export_leaves_nothing_and_can_be_retried(tmp_path: Path, monkeypatch) -> None:
    import shutil

    root = _store(tmp_path / "store", n=3)
    out = tmp_path / "exp"
    real_copy, calls = shutil.copyfile, []

    def copy_then_fill_the_disk(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(dst))
        return real_copy(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", copy_then_fill_the_disk)
    with pytest.raises(OSError, match="No space"):
        export(root, out, "imagefolder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    monkeypatch.setattr(shutil, "copyfile", real_copy)
    export(root, out, "imagefolder")
    assert len(list((out / "train").glob("*.png"))) == 4


def test_a_full_disk_is_one_error_line(tmp_path: Path) -> None:
    """A real write failure: the export runs with a file-size limit, so writing its images fails (EFBIG)."""
    root = _store(tmp_path / "store")

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))

    done = subprocess.run(
        [sys.executable, "-m", "artaug.cli", "synth", "export", str(root), "--format", "kohya", "--to",
         str(tmp_path / "exp")],
        capture_output=True, text=True, preexec_fn=limit, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "could not write" in errors[0] and "Traceback" not in done.stderr, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


# -- the critique cache ---------------------------------------------------------------------------------------------


EDIT = '{"edits": [{"box": [0, 0, 500, 500], "prompt": "a red square"}]}'


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: "[" * 50_000 + "]" * 50_000,
        lambda d: json.dumps({**d, "global_prompt": [[["deep"]]]}),
        lambda d: json.dumps({**d, "edits": d["edits"] * 9}),
        lambda d: json.dumps({**d, "edits": [{**d["edits"][0], "prompt": "x" * 5000}]}),
        lambda d: json.dumps({**d, "edits": [{**d["edits"][0], "box": {"x0": 0, "y0": 0, "x1": 2, "y1": 1}}]}),
        lambda d: json.dumps({**d, "image_size": ["a", "b"]}),
        lambda d: b"\xff\xfe not text",
    ],
)
def test_a_tampered_cache_entry_is_asked_again_and_said_so(tmp_path: Path, tamper) -> None:
    image = _image(0)
    critic = CachedCritic(RecordedCritic([EDIT] * 3, max_edits=4), tmp_path)
    first = critic.critique(image, "p")
    (entry,) = list(tmp_path.rglob("*.json"))
    text = tamper(json.loads(entry.read_text()))
    entry.write_bytes(text if isinstance(text, bytes) else text.encode())
    again = critic.critique(image, "p")
    assert [e.to_dict() for e in again.edits] == [e.to_dict() for e in first.edits]
    assert any("critique cache entry" in r and "asked again" in r for r in again.repairs), again.repairs
    assert critic.critique(image, "p").repairs == first.repairs  # the rewritten entry is sound again


# -- bounded JSON, confined paths -----------------------------------------------------------------------------------


def test_bounded_json_and_confined_paths(tmp_path: Path) -> None:
    assert json_depth('{"a": "[[[[[", "b": [[1]]}') == 3  # brackets inside strings do not count
    for text, message in (("[" * 65 + "]" * 65, "levels deep"), ('{"x": NaN}', "not valid JSON"), ("{", "not valid")):
        with pytest.raises(ValueError, match=message):
            loads_json(text)
    (tmp_path / "inside").mkdir()
    (tmp_path / "inside" / "link").symlink_to(tmp_path)
    assert confined(tmp_path / "inside", "a/b.png") == (tmp_path / "inside" / "a" / "b.png").resolve()
    for name in ("../x", "/etc/passwd", "~/x", "a/../../x", "link/secret", ""):
        with pytest.raises(UnsafePath):
            confined(tmp_path / "inside", name)


# -- Ray on loopback ----------------------------------------------------------------------------------------------


def test_a_local_ray_instance_listens_on_loopback_only(monkeypatch, tmp_path: Path) -> None:
    import types

    from artaug.config import Config
    from artaug.synth import ray_backend

    calls = []
    fake = types.SimpleNamespace(
        is_initialized=lambda: False,
        init=lambda **kwargs: calls.append(kwargs) or (_ for _ in ()).throw(RuntimeError("stop here")),
        shutdown=lambda: None,
    )
    monkeypatch.setitem(sys.modules, "ray", fake)
    with Store(tmp_path) as store:
        for address, expected in (("auto", {"address": None, "_node_ip_address": "127.0.0.1"}),
                                  ("10.0.0.5:6379", {"address": "10.0.0.5:6379"})):  # fmt: skip
            with pytest.raises(RuntimeError, match="stop here"):
                ray_backend.run_on_ray(store, Config(), address=address, workers=1, limit=1, commit=print)
            assert expected.items() <= calls[-1].items()
    assert "_node_ip_address" not in calls[-1]
