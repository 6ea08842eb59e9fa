"""Differential LoRA training on the tiny FLUX: loss, files, loading, fusing, exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import FluxPipeline

from artaug.config import TrainConfig, load_config
from artaug.files import write_toml
from artaug.train.data import as_pairs, cache_pairs
from artaug.train.flow import mid_schedule_weights, sample_sigmas, sigma_table
from artaug.train.lora_io import load_lora, lora_delta, read_metadata
from artaug.train.trainer import train_lora, train_stage, validation_loss

PROMPTS = ("a cat on a red couch", "a dog in the park at sunset")
CALL = dict(height=64, width=64, num_inference_steps=2, max_sequence_length=16, output_type="pt")


def tiny_config(**changes) -> TrainConfig:
    base = dict(
        resolution=64,
        steps=4,
        mixed_precision="no",
        max_sequence_length=16,
        learning_rate=1e-3,
        rank=4,
        alpha=8.0,
        checkpoint_every=2,
        progress=False,
    )
    return TrainConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def pipe(tiny_painter_dir) -> FluxPipeline:
    pipe = FluxPipeline.from_pretrained(tiny_painter_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def paint(pipe: FluxPipeline, prompt: str = "a cat", seed: int = 0) -> torch.Tensor:
    return pipe(prompt, generator=torch.Generator().manual_seed(seed), **CALL).images


@pytest.fixture(scope="module")
def pairs(pipe, tmp_path_factory) -> list[tuple[str, Path, Path]]:
    """Tiny pairs: the before and after of each prompt are two seeds of the tiny painter."""
    folder = tmp_path_factory.mktemp("pairs")
    out = []
    for i, prompt in enumerate(PROMPTS):
        for side, seed in (("before", i), ("after", 100 + i)):
            image = pipe(prompt, generator=torch.Generator().manual_seed(seed), **{**CALL, "output_type": "pil"})
            image.images[0].save(folder / f"{i}-{side}.png")
        out.append((prompt, folder / f"{i}-before.png", folder / f"{i}-after.png"))
    return out


@pytest.fixture(scope="module")
def trained(pipe, pairs, tmp_path_factory):
    return train_lora(
        pipe, pairs, tiny_config(steps=6), tmp_path_factory.mktemp("run"), base_model="tiny-flux", kohya=True
    )


def test_shifted_sampling_weights_mid_schedule():
    table = sigma_table(3.0)
    weights = mid_schedule_weights(table)
    assert torch.isclose(weights.mean(), torch.tensor(1.0, dtype=weights.dtype))
    assert abs(float(table[weights.argmax()]) - 0.5) < 0.01  # the bump peaks mid-schedule
    sigmas, w = sample_sigmas(256, torch.Generator().manual_seed(0), "logit_normal")
    assert bool(((sigmas > 0) & (sigmas < 1)).all()) and bool((w == 1).all())


def test_loss_goes_down(pipe, pairs, tmp_path):
    config = tiny_config(steps=30, checkpoint_every=0, learning_rate=1e-2)
    _, after = cache_pairs(pipe, as_pairs(pairs), 64, 16)
    base_loss = validation_loss(pipe.transformer, after, config)
    result = train_stage(pipe.transformer, after, config, tmp_path)
    trained_loss = validation_loss(pipe.transformer, after, config)
    pipe.transformer.unload_lora()
    assert len(result.losses) == 30 and all(map(torch.isfinite, map(torch.tensor, result.losses)))
    assert trained_loss < 0.9 * base_loss, (base_loss, trained_loss)
    assert validation_loss(pipe.transformer, after, config) == base_loss  # unloading restored the base exactly


def test_saved_lora_metadata(trained):
    meta = read_metadata(trained.path)
    assert trained.path.name == "pytorch_lora_weights.safetensors"
    assert meta["modelspec.architecture"] == "flux-1-dev/lora"
    assert meta["modelspec.sai_model_spec"] == "1.0.0" and meta["modelspec.title"]
    assert meta["artaug.base_model"] == "tiny-flux" and meta["artaug.iteration"] == "0"
    assert len(meta["artaug.dataset_hash"]) == 64 and meta["artaug.mode"] == "differential"
    adapter = json.loads(meta["lora_adapter_metadata"])
    assert adapter["transformer.r"] == 4 and adapter["transformer.lora_alpha"] == 8.0
    lora, _ = load_lora(trained.path)
    assert "single_transformer_blocks.0.proj_out" in lora and "proj_out" not in lora  # block layers only
    assert "transformer_blocks.0.attn.to_out.0" in lora and "single_transformer_blocks.0.attn.to_out.0" not in lora
    assert set(trained.stages) == {"stage1", "stage2"}
    assert (trained.path.parent / "train_config.toml").is_file()


def test_lora_loads_changes_output_and_fuse_unload_restores(pipe, trained):
    base = paint(pipe)
    pipe.load_lora_weights(trained.path)
    with_lora = paint(pipe)
    assert (with_lora - base).abs().max() > 1e-3  # the LoRA changes the painting
    pipe.fuse_lora()
    fused = paint(pipe)
    torch.testing.assert_close(fused, with_lora, atol=1e-4, rtol=0)
    pipe.unfuse_lora()
    pipe.unload_lora_weights()
    torch.testing.assert_close(paint(pipe), base, atol=1e-5, rtol=0)


def test_loaded_lora_equals_trained_weights(pipe, trained, pairs, tmp_path):
    """What diffusers loads is what was trained: same per-layer update scale * B @ A."""
    pipe.load_lora_weights(trained.path, adapter_name="check")
    try:
        for module, (a, b, scale) in trained.lora.items():
            layer = pipe.transformer.get_submodule(module)
            loaded = lora_delta(layer.lora_A["check"].weight, layer.lora_B["check"].weight, layer.scaling["check"])
            torch.testing.assert_close(loaded, lora_delta(a, b, scale))
        with pytest.raises(ValueError, match="already holds LoRA adapters"):
            train_lora(pipe, pairs, tiny_config(), tmp_path)  # would train beside (or under) a loaded LoRA
    finally:
        pipe.unload_lora_weights()


def test_differential_stage1_is_fused_then_restored(pipe, pairs, tmp_path):
    """Stage 2 trains over the stage-1-fused base; a borrowed pipeline gets its exact base weights back."""
    before = {n: p.clone() for n, p in pipe.transformer.state_dict().items()}
    images = {path: path.read_bytes() for pair in pairs for path in pair[1:]}
    result = train_lora(pipe, pairs, tiny_config(steps=3), tmp_path)
    assert all(path.read_bytes() == data for path, data in images.items())  # training never writes its inputs
    after = pipe.transformer.state_dict()
    assert set(after) == set(before) and all(torch.equal(before[n], after[n]) for n in before)
    plain = train_lora(pipe, pairs, tiny_config(steps=3, mode="plain"), tmp_path / "plain")
    assert set(plain.stages) == {"stage2"}
    # Same seed, same after images: only the fused stage-1 base makes the differential stage 2 differ from plain.
    module = "transformer_blocks.0.attn.to_q"
    assert not torch.equal(result.lora[module][1], plain.lora[module][1])


def test_resume_is_bit_identical(pipe, pairs, tmp_path):
    config = tiny_config(steps=4, batch_size=2, gradient_accumulation_steps=2, lr_warmup_steps=2, checkpoint_every=1)
    whole = train_lora(pipe, pairs, config, tmp_path / "whole")
    first = train_lora(pipe, pairs, config, tmp_path / "split", stop_after=3)  # interrupted inside stage 1
    assert not first.complete and not first.path.exists()
    second = train_lora(pipe, pairs, config, tmp_path / "split", stop_after=2)  # stage 1 done, stage 2 half
    assert not second.complete and set(second.stages) == {"stage1", "stage2"}
    resumed = train_lora(pipe, pairs, config, tmp_path / "split")
    assert resumed.complete and resumed.path.is_file()
    assert resumed.stages["stage2"].losses == whole.stages["stage2"].losses
    for module, (a, b, _) in whole.lora.items():
        assert torch.equal(a, resumed.lora[module][0]) and torch.equal(b, resumed.lora[module][1]), module
    assert len(list((tmp_path / "split" / "stage2" / "checkpoints").glob("step-*"))) == config.keep_checkpoints


class _Planted:
    """Unpickling this runs code: it must never happen on resume."""

    def __reduce__(self):
        return (Path.touch, (Path(__file__).parent / "unpickled-marker",))


def test_resume_reads_no_pickle_and_only_the_same_run(pipe, pairs, tmp_path):
    config = tiny_config(steps=4, checkpoint_every=1)
    out = tmp_path / "run"
    assert not train_lora(pipe, pairs, config, out, stop_after=2).complete
    checkpoint = max((out / "stage1" / "checkpoints").glob("step-*"))
    assert {p.name for p in checkpoint.iterdir()} == {
        "lora.safetensors", "state.safetensors", "state.json", "progress.json", "generator-0.safetensors"
    }  # fmt: skip
    marker = Path(__file__).parent / "unpickled-marker"
    for name in ("state.pt", "generator-0.pt", "optimizer.bin"):
        torch.save(_Planted(), checkpoint / name)

    # 1. Other data or settings: refused before anything is read from the checkpoint, saying what differs.
    with pytest.raises(ValueError, match=r"learning_rate 0.001 → 0.01") as changed:
        train_lora(pipe, pairs, tiny_config(steps=4, checkpoint_every=1, learning_rate=1e-2), out)
    assert "only the same run" in str(changed.value)
    with pytest.raises(ValueError, match="rank 4 → 8"):
        train_lora(pipe, pairs, tiny_config(steps=4, checkpoint_every=1, rank=8), out)
    with pytest.raises(ValueError, match="dataset_hash"):
        train_lora(pipe, pairs[:1], config, out)

    # 2. The same run resumes from safetensors + JSON and never unpickles what was planted beside them.
    result = train_lora(pipe, pairs, config, out)
    assert result.complete and not marker.exists()

    # 3. A damaged checkpoint is a clear error, not a crash in the optimizer.
    damaged = max((out / "stage1" / "checkpoints").glob("step-*"))
    (damaged / "state.json").write_text('{"dict": [["x", {"tensor": "missing"}]]}')
    with pytest.raises(ValueError, match="is damaged"):
        train_lora(pipe, pairs, config, out)


def test_config_validation_and_8bit_error(tmp_path):
    with pytest.raises(ValueError, match="resolution"):
        tiny_config(resolution=70)
    with pytest.raises(ValueError, match="unknown setting train.rnak"):
        TrainConfig.from_dict({"rnak": 4})
    config = tiny_config()
    write_toml(tmp_path / "c.toml", {"train": config.to_dict()})
    assert load_config(tmp_path / "c.toml").train == config


def test_train_command_reads_kept_pairs_of_a_synth_store(pipe, tiny_painter_dir, tmp_path, capsys):
    from PIL import Image

    from artaug.cli import main
    from artaug.synth import PromptRecord
    from artaug.synth.store import PairDraft, Store

    with Store(tmp_path / "store") as store:
        store.add_prompts([PromptRecord(f"p{i}", prompt, i) for i, prompt in enumerate(PROMPTS)])
        for record in store.claim(2):
            images = {}
            for name, seed in (("r0", record.seed), ("r1", record.seed + 10)):
                painted = pipe(
                    record.prompt, generator=torch.Generator().manual_seed(seed), **{**CALL, "output_type": "pil"}
                )
                images[name] = painted.images[0]
            kept = record.id == "p0"
            store.commit(record.id, images=images, pairs=[PairDraft(1, "r0", "r1", {}, kept, [])], trail=None)
    assert isinstance(images["r0"], Image.Image)
    (tmp_path / "train.toml").write_text("[train]\nsteps = 5\nrank = 4\nresolution = 64\nmixed_precision = 'no'\n")
    argv = ["train", str(tmp_path / "store"), "--painter", str(tiny_painter_dir), "--out", str(tmp_path / "lora"),
            "--config", str(tmp_path / "train.toml"), "--steps", "2", "--max-sequence-length", "16",
            "--no-progress", "--format", "both", "--iteration", "2"]  # fmt: skip
    assert main(argv) == 0
    assert "stage1: 2 steps" in capsys.readouterr().out  # the flag overrides the file
    saved = load_config(tmp_path / "lora" / "train_config.toml").train
    assert (saved.steps, saved.rank, saved.resolution) == (2, 4, 64)  # the file overrides the defaults
    meta = read_metadata(tmp_path / "lora" / "pytorch_lora_weights.safetensors")
    assert meta["artaug.num_pairs"] == "1" and meta["artaug.iteration"] == "2"  # the rejected pair is left out
    assert meta["artaug.base_model"] == str(tiny_painter_dir)
    assert (tmp_path / "lora" / "pytorch_lora_weights_kohya.safetensors").is_file()
    assert main(["train", str(tmp_path / "nowhere"), "--painter", "x", "--out", str(tmp_path / "x")]) == 2


@pytest.fixture(scope="module")
def after_data(pipe, pairs):
    return cache_pairs(pipe, as_pairs(pairs), 64, 16)[1]


@pytest.mark.parametrize(
    "changes",
    [
        dict(mixed_precision="bf16", gradient_checkpointing=True),
        dict(timestep_sampling="logit_normal", batch_size=3, max_grad_norm=0.0),
    ],
    ids=["bf16-checkpointing", "logit-normal-batch3"],
)
def test_training_options_train_the_lora(pipe, after_data, tmp_path, changes):
    import copy

    transformer = copy.deepcopy(pipe.transformer)
    if changes.get("mixed_precision") == "bf16":
        transformer.to(torch.bfloat16)  # as train_lora loads the base for bf16 training
    result = train_stage(transformer, after_data, tiny_config(steps=2, **changes), tmp_path)
    assert all(torch.isfinite(torch.tensor(result.losses)))
    # peft's gaussian init starts B at zero: a non-zero B means gradients reached every LoRA layer.
    assert all(b.abs().max() > 0 for _, b, _ in result.lora.values())
    assert all(a.dtype == torch.float32 for a, _, _ in result.lora.values())


def test_8bit_adam_without_bitsandbytes_says_how_to_install(pipe, after_data, tmp_path, monkeypatch):
    import copy
    import sys

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # importing it now raises ImportError
    with pytest.raises(ImportError, match=r"artaug\[train8bit\]"):
        train_stage(copy.deepcopy(pipe.transformer), after_data, tiny_config(optimizer="adamw8bit"), tmp_path)


def test_aspect_ratio_buckets(pipe, pairs, tmp_path):
    from PIL import Image

    from artaug.train.data import bucket_sizes, pick_size

    sizes = bucket_sizes(64)
    assert all(w % 16 == 0 and h % 16 == 0 and 0.5 <= w / h <= 2 for w, h in sizes) and (64, 64) in sizes
    assert pick_size((200, 100), 64, buckets=True) == (96, 48) and pick_size((200, 100), 64, buckets=False) == (64, 64)
    # Two wide and two tall versions of the tiny pairs: two buckets, batches of 2 never mix them.
    shaped = []
    for i, (prompt, before, after) in enumerate(pairs * 2):
        size = (96, 48) if i % 2 else (48, 96)
        paths = []
        for side, source in (("before", before), ("after", after)):
            path = tmp_path / f"{i}-{side}.png"
            Image.open(source).resize(size).save(path)
            paths.append(path)
        shaped.append((prompt, *paths))
    _, after = cache_pairs(pipe, as_pairs(shaped), 64, 16, buckets=True)
    assert sorted(set(after.latent_sizes)) == [(6, 12), (12, 6)]
    assert [t.shape for t in after.latents] == [(18, 64), (18, 64)] * 2
    import copy

    result = train_stage(copy.deepcopy(pipe.transformer), after, tiny_config(steps=3, batch_size=2), tmp_path / "run")
    assert len(result.losses) == 3 and all(b.abs().max() > 0 for _, b, _ in result.lora.values())


DDP_SCRIPT = """
import hashlib, json, sys
import torch
from accelerate import PartialState
from artaug.train import TrainConfig, train_lora

out, painter, pairs, stop = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
config = TrainConfig(resolution=64, steps=3, mixed_precision="no", max_sequence_length=16, rank=4, checkpoint_every=1,
                     progress=False, learning_rate=1e-3)
result = train_lora(painter, pairs, config, out, stop_after=stop or None)
digest = hashlib.sha256(b"".join(t.numpy().tobytes() for m in sorted(result.lora) for t in result.lora[m][:2]))
state = PartialState()
with open(f"{out}-rank{state.process_index}.json", "w") as f:  # files: two processes' stdout lines can interleave
    json.dump([state.process_index, state.num_processes, result.complete, digest.hexdigest()], f)
"""


def test_two_processes_with_torchrun_agree_and_resume_exactly(pairs, tiny_painter_dir, tmp_path):
    """``accelerate launch`` / torchrun: DDP on two CPU processes (gloo), interrupted and resumed."""
    import json
    import os
    import subprocess
    import sys

    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    payload = json.dumps([[p, str(b), str(a)] for p, b, a in pairs])

    def run(out: str, stop: int) -> list[list]:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   str(script), str(tmp_path / out), str(tiny_painter_dir), payload, str(stop)]  # fmt: skip
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return [json.loads((tmp_path / f"{out}-rank{rank}.json").read_text()) for rank in range(2)]

    whole = run("whole", 0)
    assert [r[:3] for r in whole] == [[0, 2, True], [1, 2, True]] and whole[0][3] == whole[1][3]  # DDP kept in sync
    assert [r[2] for r in run("split", 2)] == [False, False]  # stopped inside stage 1
    assert run("split", 0) == whole  # resumed: bit-identical to the uninterrupted two-process run
