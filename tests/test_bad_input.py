"""Every command against a battery of bad inputs: a non-zero exit, one ``error:`` line, no traceback, nothing written,
and no model loaded before the input was found bad.

Each case names the command line (built from the input files below) and a fragment the error must contain, so an
error that is merely present but unhelpful fails too. Model loading is replaced by a recorder: a case that reaches a
``from_pretrained`` with bad input fails, because the check came too late.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from artaug.cli import main
from artaug.synth.prompts import PromptRecord
from artaug.synth.store import PairDraft, Store
from artaug.types import PaintRequest, Trail


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels: a decompression bomb's signature, in 60 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _store(root: Path, kept: bool = True) -> Path:
    rng = np.random.default_rng(0)
    with Store(root) as store:
        store.add_prompts([PromptRecord("p0", "a red fox", 1)])
        (record,) = store.claim(1)
        pictures = {k: Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)) for k in ("r0", "r1")}
        pairs = [PairDraft(1, "r0", "r1", {}, kept, [])]
        store.commit(record.id, images=pictures, pairs=pairs, trail={"prompt": record.prompt})
    return root


@pytest.fixture
def files(tmp_path: Path, tiny_painter_dir: Path) -> dict[str, str]:
    """Input files of every kind of wrong, in ``tmp_path/in``; outputs are asked for under ``tmp_path/out``."""
    d = tmp_path / "in"
    d.mkdir()
    f: dict[str, str] = {"out": str(tmp_path / "out"), "in": str(d), "tiny": str(tiny_painter_dir)}

    def put(name: str, data: str | bytes) -> None:
        path = d / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        f[name] = str(path)

    put("prompts.txt", "a red fox\n")
    put("empty.txt", "")
    put("comments.txt", "# nothing here\n\n")
    put("binary.txt", bytes(range(256)) * 8)
    put("deep.jsonl", '{"prompt": ' + "[" * 500 + "]" * 500 + "}\n")
    put("prompts.yaml", "prompt: x\n")
    put("bad.toml", "[loop\n")
    put("types.toml", '[painter]\nheight = "tall"\n')
    put("unknown.toml", "[paintr]\nheight = 64\n")
    put("nan.toml", "[painter]\nguidance_scale = nan\n")
    image = Image.new("RGB", (32, 32), (200, 30, 30))
    image.save(d / "image.png")
    f["image.png"] = str(d / "image.png")
    raw = (d / "image.png").read_bytes()
    put("truncated.png", raw[: len(raw) // 2])
    put("notimage.png", "hello, I am text")
    put("bomb.png", _png_header(30_000, 30_000))
    put("notes.bin", bytes(range(256)) * 8)
    put("nolora.safetensors", b"")
    save_file({"foo": torch.zeros(2, 2)}, d / "notlora.safetensors")
    f["notlora.safetensors"] = str(d / "notlora.safetensors")
    put("text.safetensors", "not safetensors at all")
    nan = torch.full((4, 8), float("nan"))
    save_file({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": nan,
               "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(8, 4)},
              d / "nan.safetensors")  # fmt: skip
    f["nan.safetensors"] = str(d / "nan.safetensors")
    save_file({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 999),
               "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(999, 4)},
              d / "shapes.safetensors")  # fmt: skip
    f["shapes.safetensors"] = str(d / "shapes.safetensors")
    save_file({"transformer.no.such.layer.lora_A.weight": torch.zeros(4, 32),
               "transformer.no.such.layer.lora_B.weight": torch.zeros(32, 4)}, d / "layers.safetensors")  # fmt: skip
    f["layers.safetensors"] = str(d / "layers.safetensors")
    (d / "emptydir").mkdir()
    f["emptydir"] = str(d / "emptydir")
    (d / "full").mkdir()
    (d / "full" / "x").write_text("x")
    f["full"] = str(d / "full")
    (d / "dir.png").mkdir()
    f["dir.png"] = str(d / "dir.png")
    put("model_index.json", "{")
    (d / "brokenflux").mkdir()
    (d / "brokenflux" / "model_index.json").write_text("{ not json")
    f["brokenflux"] = str(d / "brokenflux")

    def trail(name: str, painter: str, files_: dict, **request) -> None:
        data = Trail("a fox", PaintRequest("a fox", height=64, width=64, **request)).to_dict()
        data["provenance"] = {"painter": {"id": painter}, "files": files_}
        put(name, json.dumps(data))

    trail("escape.json", "black-forest-labs/FLUX.1-dev", {"first": "../../../../etc/passwd"})
    trail("hub.json", "black-forest-labs/FLUX.1-dev", {"first": "round_00.png"})
    trail("nopainter.json", "", {"first": "round_00.png"})
    good = json.loads((d / "hub.json").read_text())
    good["first_request"]["guidance_scale"] = "NaN"
    put("nanrequest.json", json.dumps(good))
    put("deep.json", "[" * 10_000 + "]" * 10_000)
    put("notjson.json", "{trail")
    f["store"] = str(_store(d / "store"))
    f["nokept"] = str(_store(d / "nokept", kept=False))
    (d / "garbage").mkdir()
    (d / "garbage" / "ledger.sqlite").write_bytes(b"this is not a database" * 100)
    f["garbage"] = str(d / "garbage")
    return f


# (command line with {placeholders}, fragment of the error, whether a model may load before the error)
CASES = [
    # paint: settings
    ("paint 'a fox' --strength 1.5", "loop.strength must be <= 1.0"),
    ("paint 'a fox' --rounds 0 --strength 0", "loop.strength must be > 0.0"),
    ("paint 'a fox' --guidance-scale nan", "guidance_scale must be a finite number"),
    ("paint 'a fox' --guidance-scale inf", "guidance_scale must be a finite number"),
    ("paint 'a fox' --height 100", "multiple of 16"),
    ("paint 'a fox' --width 0", "painter.width must be >= 16"),
    ("paint 'a fox' --height 99999", "painter.height must be <= 4096"),
    ("paint 'a fox' --rounds -1", "loop.rounds must be >= 0"),
    ("paint 'a fox' --steps 0", "num_inference_steps must be >= 1"),
    ("paint 'a fox' --steps many", "cannot read 'many' as an integer"),
    ("paint 'a fox' --edit-weight -1", "loop.edit_weight must be > 0.0"),
    ("paint 'a fox' --max-sequence-length 4096", "max_sequence_length must be <= 512"),
    ("paint 'a fox' --device gpu", "unknown device 'gpu'"),
    ("paint 'a fox' --device cuda:7 --rounds 0", "cuda:7"),
    ("paint 'a fox' --offload model --device cpu", "moves weights to an accelerator"),
    ("paint 'a fox' --seed -3", "argument --seed: must be in [0, 9223372036854775807]"),
    ("paint 'a fox' --set loop.nope=1", "unknown setting loop.nope"),
    ("paint 'a fox' --set nonsense", "expected section.key=value"),
    ("paint 'a fox' --set judge.broken.black_level=0.99", "black_level 0.99 must be below"),
    ("paint '   '", "prompt must be a non-empty string"),
    ("paint {long_prompt}", "at most 4000"),
    # paint: files
    ("paint 'a fox' --config {in}/missing.toml", "missing.toml does not exist"),
    ("paint 'a fox' --config {bad.toml}", "not valid TOML"),
    ("paint 'a fox' --config {types.toml}", "painter.height: cannot read 'tall'"),
    ("paint 'a fox' --config {unknown.toml}", "unknown config section [paintr]"),
    ("paint 'a fox' --config {nan.toml}", "guidance_scale must be a finite number"),
    ("paint 'a fox' --config {emptydir}", "(it is a folder)"),
    ("paint 'a fox' --painter {in}/no/such/folder", "does not exist"),
    ("paint 'a fox' --painter {emptydir} --rounds 0", "no model_index.json"),
    ("paint 'a fox' --painter {prompts.txt} --rounds 0", "is a file"),
    ("paint 'a fox' --painter {brokenflux} --rounds 0", "model_index.json", "loads"),
    ("paint 'a fox' --lora {in}/missing.safetensors", "does not exist"),
    ("paint 'a fox' --lora {notlora.safetensors} --rounds 0", "holds no LoRA layers"),
    ("paint 'a fox' --lora {text.safetensors} --rounds 0", "is not a safetensors LoRA file"),
    ("paint 'a fox' --lora {nan.safetensors} --rounds 0", "NaN or infinite"),
    (
        "paint 'a fox' --painter {tiny} --lora {shapes.safetensors} --rounds 0 --height 64 --width 64 --steps 1",
        "does not fit the painter",
        "loads",
    ),
    (
        "paint 'a fox' --painter {tiny} --lora {layers.safetensors} --rounds 0 --height 64 --width 64 --steps 1",
        "does not fit the painter",
        "loads",
    ),  # fmt: skip
    ("paint 'a fox' --critic {notes.bin} --rounds 1", "not UTF-8 text"),
    ("paint 'a fox' --critic {empty.txt} --rounds 1", "holds no critic answers"),
    ("paint 'a fox' --critic http://user:pw@host/v1 --rounds 1", "not in base_url"),
    ("paint 'a fox' --output {dir.png} --rounds 0", "is a folder"),
    ("paint 'a fox' --output {prompts.txt}", "is a file"),
    ("paint 'a fox' --output {prompts.txt}/run", "is not a folder"),
    ("paint 'a fox' --edit 0,0,2,1=sky", "not inside the image"),
    ("paint 'a fox' --edit 0,0,1,1=sky --rounds 2", "--edit is for --rounds 0"),
    ("paint 'a fox' --edit nan,0,1,1=sky", "finite"),
    ("paint 'a fox' --edit 0,0,1,1", "must look like"),
    # critique
    ("critique {in}/missing.png --prompt x", "does not exist"),
    ("critique {notimage.png} --prompt x", "not a readable image"),
    ("critique {truncated.png} --prompt x", "not a readable image"),
    ("critique {bomb.png} --prompt x", "too large"),
    ("critique {emptydir} --prompt x", "(it is a folder)"),
    ("critique {image.png} --prompt ' '", "--prompt must be"),
    ("critique {image.png} --prompt x --max-edits 0", "critic.max_edits must be >= 1"),
    ("critique {image.png} --prompt x --timeout -1", "critic.timeout must be > 0.0"),
    ("critique {image.png} --prompt x --timeout nan", "critic.timeout must be a finite number"),
    ("critique {image.png} --prompt x --api-key-env 'A B'", "not a variable name"),
    ("critique {image.png} --prompt x --template nope", "critic.template"),
    ("critique {image.png} --prompt x --critic {notes.bin}", "not UTF-8 text"),
    ("critique {image.png} --prompt x --critic {emptydir}", "could not load the critic", "loads"),
    ("critique {image.png} --prompt x --critic ftp://h/v1", "does not exist"),
    ("critique {image.png} --prompt x --draw {emptydir}", "is a folder"),
    (
        "critique {image.png} --prompt x --critic http://127.0.0.1:9/v1 --max-retries 0 --timeout 2",
        "the critic gave no answer",
    ),  # fmt: skip
    # replay
    ("replay {in}/missing.json", "does not exist"),
    ("replay {notjson.json}", "is not valid JSON"),
    ("replay {deep.json}", "levels deep"),
    ("replay {escape.json}", "leads outside"),
    ("replay {hub.json}", "--allow-hub"),
    ("replay {nopainter.json}", "names no painter"),
    ("replay {nanrequest.json}", "is not an artaug trail"),
    ("replay {prompts.txt}", "not valid JSON"),
    # demo
    ("demo --rounds -1", "loop.rounds must be >= 0"),
    ("demo --output {prompts.txt}", "is a file"),
    # synth
    ("synth {in}/missing.txt --out {out}", "does not exist"),
    ("synth {empty.txt} --out {out}", "holds no prompts"),
    ("synth {comments.txt} --out {out}", "holds no prompts"),
    ("synth {binary.txt} --out {out}", "not UTF-8"),
    ("synth {deep.jsonl} --out {out}", "levels deep"),
    ("synth {prompts.yaml} --out {out}", "unsupported prompt file"),
    ("synth {prompts.txt} --out {prompts.txt}", "is a file"),
    ("synth {prompts.txt} --out {out} --rounds -1", "loop.rounds must be >= 0"),
    ("synth {prompts.txt} --out {out} --set synth.lease_ttl=0", "synth.lease_ttl must be >= 1.0"),
    ("synth {prompts.txt} --out {out} --limit 0", "argument --limit: must be in [1, ...]"),
    ("synth --resume --out {out}", "not a synth store yet"),
    ("synth {prompts.txt}", "--out DIR is required"),
    ("synth stats {in}/nostore", "is not an artaug synth store"),
    ("synth stats {garbage}", "is not an artaug ledger"),
    ("synth stats {store} --png {emptydir}", "is a folder"),
    ("synth export {store} --format kohya --to {full}", "not an empty folder"),
    ("synth export {in}/nostore --format kohya --to {out}", "is not an artaug synth store"),
    ("synth export {store} --format tar --to {out}", "invalid choice"),
    # train, bootstrap, lora
    ("train {in}/nostore --painter {emptydir} --out {out}", "is not an artaug synth store"),
    ("train {nokept} --painter {emptydir} --out {out}", "pairs to train on"),
    ("train {store} --painter {emptydir} --out {out} --rank 0", "train.rank must be >= 1"),
    ("train {store} --painter {emptydir} --out {out} --learning-rate nan", "learning_rate must be a finite number"),
    ("train {store} --painter {emptydir} --out {out} --resolution 100", "multiple of 16"),
    ("train {store} --painter {emptydir} --out {out} --config {bad.toml}", "not valid TOML"),
    ("train {store} --painter {emptydir} --out {prompts.txt}", "is a file"),
    ("bootstrap --prompts {in}/missing.txt --heldout {prompts.txt} --out {out}", "does not exist"),
    ("bootstrap --prompts {prompts.txt} --heldout {empty.txt} --out {out}", "holds no prompts"),
    ("bootstrap --prompts {prompts.txt} --heldout {prompts.txt} --out {out} --iterations 0", "must be >= 1"),
    ("lora merge {in}/missing.safetensors --out {out}", "does not exist"),
    ("lora merge {notlora.safetensors} --out {out}", "holds no LoRA layers"),
    ("lora merge {text.safetensors} --out {out}", "is not a safetensors LoRA file"),
    ("lora merge {nolora.safetensors} --out {out}", "is not a safetensors LoRA file"),
    ("lora merge {nan.safetensors} --out {out}", "NaN or infinite"),
    ("lora merge {notlora.safetensors} --out {out} --weights nan", "finite"),
    ("lora merge {notlora.safetensors} --out {out} --weights 1 2", "2 multipliers for 1 LoRAs"),
    ("lora merge {notlora.safetensors} --out {out} --rank 0", "argument --rank: must be in [1, ...]"),
    ("lora kohya {notlora.safetensors} --out {out}", "holds no LoRA layers"),
    # tiny
    ("tiny painter {full}", "not an empty folder"),
    ("tiny critic {prompts.txt}", "not an empty folder"),
    ("tiny critic {out} --variant qwen9", "invalid choice"),
    # the command line itself
    ("paint", "the following arguments are required"),
    ("nosuchcommand", "invalid choice"),
]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.fixture
def model_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record (and refuse) every weight load: bad input must be found before one."""
    import diffusers
    import transformers

    loads: list[str] = []

    def refuse(cls_name: str):
        def load(*args, **kwargs):
            loads.append(f"{cls_name}({args[1] if len(args) > 1 else args[0] if args else ''})")
            raise AssertionError("a model load was reached")

        return classmethod(lambda cls, *a, **k: load(cls, *a, **k))

    for module, name in ((diffusers, "FluxPipeline"), (transformers, "AutoModelForImageTextToText"),
                         (transformers, "AutoProcessor"), (transformers, "CLIPModel")):  # fmt: skip
        monkeypatch.setattr(getattr(module, name), "from_pretrained", refuse(name))
    return loads


@pytest.mark.parametrize("case", CASES, ids=[c[0][:70] for c in CASES])
def test_bad_input_is_one_error_line_and_leaves_nothing(case, files, tmp_path, monkeypatch, capsys, request):
    import shlex

    command, fragment, *flags = case
    monkeypatch.chdir(tmp_path)
    loads: list[str] = [] if "loads" in flags else request.getfixturevalue("model_loads")
    values = {**files, "long_prompt": "x" * 5000}
    argv = [re.sub(r"\{([\w.]+)\}", lambda m: values[m[1]], arg) for arg in shlex.split(command)]
    before = _snapshot(tmp_path)

    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code

    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code not in (0, None), err
    assert len(errors) == 1, err
    assert fragment in errors[0], errors[0]
    assert "Traceback" not in err and "unexpected failure" not in err, err
    assert loads == [], f"a model load was reached before the error: {loads}"
    assert _snapshot(tmp_path) == before, "the command left files behind"
