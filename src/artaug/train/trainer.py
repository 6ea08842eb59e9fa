"""The training orchestrator: (differential) LoRA training of a painter's transformer (FLUX.1 or Qwen-Image) on cached
pairs.

``train_lora`` reads top to bottom: load and cache once, stage 1 on the *before* images fused into the base
(differential mode), stage 2 on the *after* images, save. ``train_stage`` is one LoRA's training loop; every random
draw of it comes from one generator whose state is checkpointed with the LoRA, optimizer and step, so a resumed run
ends bit-identical to an uninterrupted one. It runs under ``accelerate launch`` unchanged (one process per GPU,
disjoint examples per process, gradients all-reduced by DDP).

Nothing is unpickled: checkpoints are safetensors (every tensor of the LoRA, the optimizer, the schedule and the
generators) plus JSON (the structure around them), so a checkpoint planted in ``--out`` cannot run code. A run
resumes only from a folder made from the same data and settings (``train_run.json``); otherwise the error says
what differs.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from artaug.config import TrainConfig
from artaug.files import loads_json, read_json, write_json, write_toml
from artaug.train.data import CachedData, TrainPair, as_pairs, cache_pairs, dataset_hash
from artaug.train.family import is_qwen_image, transformer_inputs
from artaug.train.flow import add_noise, flow_matching_loss, sample_sigmas
from artaug.train.lora_io import WEIGHT_NAME, Lora, lora_from_peft, modelspec, save_kohya, save_lora

ADAPTER = "artaug"


@dataclass
class StageResult:
    """One trained LoRA: its layers, the loss of every optimizer step, and what it cost."""

    lora: Lora
    losses: list[float]
    steps: int
    seconds: float = 0.0
    peak_memory_bytes: int | None = None
    step_seconds: list[float] = field(default_factory=list)


@dataclass
class TrainResult:
    """What ``train_lora`` produced: the kept LoRA (stage 2 in differential mode) and its file(s)."""

    lora: Lora
    path: Path
    metadata: dict[str, str]
    stages: dict[str, StageResult] = field(default_factory=dict)
    kohya_path: Path | None = None
    complete: bool = True  # False when ``stop_after`` ended a stage early: run again to resume


def lora_config(config: TrainConfig):
    """A peft ``LoraConfig`` matching only block-level layers named by ``config.target_modules``.

    A regex rather than a suffix list, because ``proj_out`` also names FLUX's final output layer, which stays frozen.
    A name may be qualified with its block kind (``single_transformer_blocks.attn.to_q``) to adapt only that kind.
    """

    from peft import LoraConfig

    either, alternatives = [], []
    for name in config.target_modules:
        kind, _, rest = name.partition(".")
        if kind in ("transformer_blocks", "single_transformer_blocks"):
            alternatives.append(rf"{kind}\.\d+\.{re.escape(rest)}")
        else:
            either.append(re.escape(name))
    if either:
        alternatives.append(rf"(transformer_blocks|single_transformer_blocks)\.\d+\.({'|'.join(either)})")
    return LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        init_lora_weights="gaussian",
        target_modules=rf"^({'|'.join(alternatives)})$",
    )


def make_accelerator(mixed_precision: str):
    """An ``Accelerator`` in ``mixed_precision``. accelerate keeps one global state per process; a single process
    may train several configs in a row (tests, bootstrap), so a differing precision resets it there."""
    from accelerate import Accelerator, PartialState
    from accelerate.state import AcceleratorState

    try:
        return Accelerator(mixed_precision=mixed_precision)
    except ValueError as e:
        if "already been initialized" not in str(e):
            raise
        if PartialState().num_processes > 1:
            raise ValueError(
                f"accelerate was started with another mixed precision than the config's {mixed_precision!r}: pass "
                f"`accelerate launch --mixed_precision {mixed_precision}` or change the config"
            ) from e
        AcceleratorState._reset_state()
        return Accelerator(mixed_precision=mixed_precision)


def _lora_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if ".lora_A." in n or ".lora_B." in n}


def _make_optimizer(params: list[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError as e:
            raise ImportError(
                "optimizer 'adamw8bit' needs bitsandbytes: pip install 'artaug[train8bit]' (or use 'adamw')"
            ) from e
        return bnb.optim.AdamW8bit(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)


class _BatchOrder:
    """Epoch-wise shuffled batches, addressed by a global batch counter, so the order needs no saved state.

    A batch holds examples of one latent size (one aspect-ratio bucket); each epoch shuffles every bucket, cuts it
    into batches (the last one of a bucket may be smaller) and shuffles the batches.
    """

    def __init__(self, sizes: list[tuple[int, int]], batch_size: int, seed: int):
        self.buckets: dict[tuple[int, int], list[int]] = {}
        for i, size in enumerate(sizes):
            self.buckets.setdefault(size, []).append(i)
        self.batch_size, self.seed, self._epoch, self._batches = batch_size, seed, -1, []
        self.per_epoch = sum(math.ceil(len(v) / batch_size) for v in self.buckets.values())

    def __call__(self, position: int) -> list[int]:
        epoch = position // self.per_epoch
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            batches = []
            for size in sorted(self.buckets):
                members = self.buckets[size]
                shuffled = [members[int(i)] for i in torch.randperm(len(members), generator=g)]
                batches += [shuffled[i : i + self.batch_size] for i in range(0, len(shuffled), self.batch_size)]
            self._batches = [batches[int(i)] for i in torch.randperm(len(batches), generator=g)]
            self._epoch = epoch
        return self._batches[position % self.per_epoch]


# ------------------------------------------------------------------------------------------------------ checkpoints


def _checkpoints(stage_dir: Path) -> list[Path]:
    found = [p for p in (stage_dir / "checkpoints").glob("step-*") if re.fullmatch(r"step-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _save_checkpoint(
    stage_dir: Path, step: int, accelerator, model, optimizer, scheduler, generator, losses, keep: int
) -> None:
    """Every process writes its generator state; the main process writes the rest and publishes the folder."""
    from safetensors.torch import save_file

    final = stage_dir / "checkpoints" / f"step-{step:07d}"
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    save_file({"state": generator.get_state()}, tmp / f"generator-{accelerator.process_index}.safetensors")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        lora = {n: p.detach().cpu().contiguous() for n, p in _lora_parameters(model).items()}
        save_file(lora, tmp / "lora.safetensors")
        tensors: dict[str, torch.Tensor] = {}
        structure = _flatten({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tensors)
        save_file(tensors, tmp / "state.safetensors")
        (tmp / "state.json").write_text(json.dumps(structure))
        progress = {"step": step, "losses": losses, "num_processes": accelerator.num_processes}
        (tmp / "progress.json").write_text(json.dumps(progress))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)  # atomic: a crash mid-save leaves only a *.tmp folder, which is never read
        for old in _checkpoints(stage_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _load_checkpoint(path: Path, accelerator, model, optimizer, scheduler, generator) -> tuple[int, list[float]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        progress = read_json(path / "progress.json", what="checkpoint progress")
        if progress["num_processes"] != accelerator.num_processes:
            raise ValueError(
                f"checkpoint {path} was written by {progress['num_processes']} processes, this run has "
                f"{accelerator.num_processes}: an exact resume needs the same number (or start a new --out)"
            )
        saved = load_file(path / "lora.safetensors")
        params = _lora_parameters(model)
        if set(saved) != set(params) or any(saved[n].shape != p.shape for n, p in params.items()):
            raise ValueError(f"checkpoint {path} does not match this LoRA configuration (other layers or rank)")
        state = _unflatten(
            loads_json((path / "state.json").read_text(encoding="utf-8"), where=f"{path}/state.json"),
            load_file(path / "state.safetensors"),
        )
        generator_state = load_file(path / f"generator-{accelerator.process_index}.safetensors")["state"]
        with torch.no_grad():
            for name, tensor in saved.items():
                params[name].copy_(tensor)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(generator_state)
        return int(progress["step"]), [float(v) for v in progress["losses"]]
    except (OSError, KeyError, TypeError, RuntimeError, SafetensorError) as error:
        raise ValueError(
            f"checkpoint {path} is damaged or from another artaug ({type(error).__name__}: {error}); "
            "delete that folder to resume from the previous checkpoint"
        ) from None


def _flatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """A nested state dict as JSON: tensors go to ``tensors`` (saved as safetensors) and are referenced by key;
    dict keys keep their type (optimizer state is keyed by parameter index)."""
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().cpu().contiguous()
        return {"tensor": key}
    if isinstance(value, dict):
        return {"dict": [[k, _flatten(v, tensors)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return {"tuple" if isinstance(value, tuple) else "list": [_flatten(v, tensors) for v in value]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise TypeError(f"cannot checkpoint a {type(value).__name__} without pickling it")


def _unflatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    ((kind, inner),) = value.items()
    if kind == "tensor":
        return tensors[inner]
    if kind == "dict":
        return {k: _unflatten(v, tensors) for k, v in inner}
    if kind in ("list", "tuple"):
        items = [_unflatten(v, tensors) for v in inner]
        return tuple(items) if kind == "tuple" else items
    if kind == "value":
        return inner
    raise TypeError(f"unknown checkpoint entry {kind!r}")


# ------------------------------------------------------------------------------------------------------ one stage


def train_stage(
    transformer: torch.nn.Module,
    data: CachedData,
    config: TrainConfig,
    stage_dir: str | Path,
    accelerator=None,
    stage_seed: int = 0,
    stop_after: int | None = None,
) -> StageResult:
    """Train a fresh LoRA (adapter ``artaug``, left in ``transformer``: fuse or unload it next) on ``data``.

    Resumes from the newest checkpoint in ``stage_dir/checkpoints``. ``stop_after`` ends the loop early after that
    many optimizer steps (with a checkpoint), as an interruption would: tests and time-boxed jobs use it.
    """
    from tqdm.auto import tqdm

    accelerator = accelerator or make_accelerator(config.mixed_precision)
    stage_dir = Path(stage_dir)
    started = time.perf_counter()
    if accelerator.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(accelerator.device)

    # 1. Fresh LoRA layers (seeded init), frozen base as loaded, LoRA parameters in float32.
    # The base keeps the dtype it was loaded in (``train_lora`` loads it in the training precision); a borrowed
    # float32 model trained under bf16 autocast is not downcast behind its owner's back.
    weight_dtype = transformer.dtype
    transformer.requires_grad_(False)
    transformer.to(accelerator.device)
    torch.manual_seed(config.seed + stage_seed)
    lora = lora_config(config)
    if not any(re.match(lora.target_modules, name) for name, _ in transformer.named_modules()):
        raise ValueError(
            f"train.target_modules ({', '.join(config.target_modules)}) names no layer of this painter's "
            f"{type(transformer).__name__}: name its block layers (e.g. attn.to_q, attn.to_k, attn.to_v)"
        )
    transformer.add_adapter(lora, adapter_name=ADAPTER)
    params = list(_lora_parameters(transformer).values())
    for p in params:
        p.data = p.data.float()
        p.requires_grad_(True)
    if config.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    transformer.train()

    # 2. Optimizer, warm-up schedule and the one generator of every random draw.
    optimizer = _make_optimizer(params, config)
    warmup = config.lr_warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (warmup + 1)))
    rank, world = accelerator.process_index, accelerator.num_processes
    generator = torch.Generator().manual_seed(config.seed * 7919 + stage_seed * 131 + rank)
    order = _BatchOrder(data.latent_sizes, config.batch_size, config.seed + stage_seed)

    # 3. Resume from the newest checkpoint, if any (before prepare: plain modules and optimizer).
    step, losses = 0, []
    if _checkpoints(stage_dir):
        step, losses = _load_checkpoint(
            _checkpoints(stage_dir)[-1], accelerator, transformer, optimizer, scheduler, generator
        )
    model, optimizer = accelerator.prepare(transformer, optimizer)

    # 4. The loop: micro-batches accumulate into one optimizer step; checkpoints only at step boundaries.
    device = accelerator.device
    end = config.steps if stop_after is None else min(config.steps, step + stop_after)
    bar = tqdm(
        total=config.steps,
        initial=step,
        disable=not (config.progress and accelerator.is_main_process),
        desc=f"train {stage_dir.name}",
    )
    ga = config.gradient_accumulation_steps
    step_seconds = []
    while step < end:
        tick = time.perf_counter()
        step_loss = 0.0
        for micro in range(ga):
            index = order((step * ga + micro) * world + rank)
            x0, embeds, pooled, size = data.batch(index)
            x0, bs = x0.to(device), x0.shape[0]
            text = transformer_inputs(transformer, embeds, pooled, data.mask(index), size, config.guidance, device,
                                      weight_dtype)  # fmt: skip
            noise = torch.randn(x0.shape, generator=generator).to(device)
            sigmas, weights = sample_sigmas(
                bs, generator, config.timestep_sampling, config.shift, config.logit_mean, config.logit_std
            )
            x_t = add_noise(x0, noise, sigmas)
            sync = accelerator.no_sync(model) if micro < ga - 1 else _nullcontext()
            with sync, accelerator.autocast():
                prediction = model(
                    hidden_states=x_t.to(weight_dtype),
                    timestep=sigmas.to(device, weight_dtype),
                    **text,
                    return_dict=False,
                )[0]
                loss = flow_matching_loss(prediction, x0, noise, weights.to(device))
                accelerator.backward(loss / ga)
            step_loss += loss.detach().float() / ga
        if config.max_grad_norm > 0:
            accelerator.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        losses.append(float(accelerator.reduce(step_loss.to(device), reduction="mean")))  # also syncs the device
        step_seconds.append(time.perf_counter() - tick)
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if step == end or (config.checkpoint_every and step % config.checkpoint_every == 0):
            _save_checkpoint(
                stage_dir,
                step,
                accelerator,
                accelerator.unwrap_model(model),
                optimizer,
                scheduler,
                generator,
                losses,
                config.keep_checkpoints,
            )
    bar.close()

    # 5. Hand the trained layers back; the adapter stays in place for the caller to fuse or unload.
    transformer = accelerator.unwrap_model(model)
    lora = lora_from_peft(
        {n.replace(f".{ADAPTER}", ""): p for n, p in _lora_parameters(transformer).items()}, config.alpha
    )
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    result = StageResult(lora, losses, step, time.perf_counter() - started, peak, step_seconds)
    if config.gradient_checkpointing:
        transformer.disable_gradient_checkpointing()
    transformer.eval()
    return result


@torch.no_grad()
def validation_loss(transformer, data: CachedData, config: TrainConfig, draws: int = 4, seed: int = 1234) -> float:
    """Mean flow-matching loss over every example with fixed noise and sigmas: comparable between two models."""
    generator = torch.Generator().manual_seed(seed)
    device, dtype = transformer.device, transformer.dtype
    total = []
    for _ in range(draws):
        for i in range(len(data)):
            x0, embeds, pooled, size = data.batch([i])
            x0 = x0.to(device)
            noise = torch.randn(x0.shape, generator=generator).to(device)
            sigmas, weights = sample_sigmas(
                1, generator, config.timestep_sampling, config.shift, config.logit_mean, config.logit_std
            )
            prediction = transformer(
                hidden_states=add_noise(x0, noise, sigmas).to(dtype),
                timestep=sigmas.to(device, dtype),
                **transformer_inputs(
                    transformer, embeds, pooled, data.mask([i]), size, config.guidance, device, dtype
                ),
                return_dict=False,
            )[0]
            total.append(float(flow_matching_loss(prediction, x0, noise, weights.to(device))))
    return sum(total) / len(total)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


# ------------------------------------------------------------------------------------------------------ orchestrator


def train_lora(
    painter: str | Path | Any,
    pairs: Iterable[Any],
    config: TrainConfig,
    out_dir: str | Path,
    *,
    base_model: str | None = None,
    kohya: bool = False,
    stop_after: int | None = None,
    extra_metadata: dict[str, Any] | None = None,
) -> TrainResult:
    """Train the LoRA of ``config.mode`` on ``pairs`` and write ``out_dir/pytorch_lora_weights.safetensors``.

    ``painter`` is a hub id or folder of a painter pipeline (FLUX.1, Qwen-Image), or a loaded ``FluxPipeline`` /
    ``QwenImagePipeline`` (its transformer is restored exactly after differential training: the stage-1 fused
    weights are put back from a CPU copy).
    ``pairs``: ``TrainPair``s, ``(prompt, before, after)`` tuples or ``PairRecord``s. Re-running with the same
    ``out_dir`` resumes where the last run stopped.
    """
    from artaug.painter import painter_class

    # 1. Check inputs: a resumed run must be the same run (data, base, settings); dump the config beside it.
    pairs: list[TrainPair] = as_pairs(pairs)
    out_dir = Path(out_dir)
    owned = isinstance(painter, (str, Path))
    family = painter_class(str(painter)) if owned else None
    base_model = base_model or str(painter if owned else getattr(painter, "name_or_path", "") or "unknown")
    data_hash = dataset_hash(pairs)
    check_resume(out_dir, run_identity(config, data_hash, base_model, len(pairs)))
    accelerator = make_accelerator(config.mixed_precision)
    if accelerator.is_main_process:
        write_toml(out_dir / "train_config.toml", {"train": config.to_dict()})
        write_json(out_dir / RUN_FILE, run_identity(config, data_hash, base_model, len(pairs)))

    # 2. The pipeline: loaded here (and its text encoders dropped after caching), or borrowed.
    dtype = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[config.mixed_precision]
    pipe = family.load_pipeline(str(painter), dtype) if family is not None else painter
    if getattr(pipe.transformer, "peft_config", None):
        raise ValueError(
            f"the pipeline's transformer already holds LoRA adapters {sorted(pipe.transformer.peft_config)}: fuse and "
            "unload them first (pipe.fuse_lora(); pipe.unload_lora_weights()) so training starts from plain weights"
        )
    pipe.vae.to(accelerator.device)
    encoders = [name for name in ("text_encoder", "text_encoder_2") if getattr(pipe, name, None) is not None]
    for name in encoders:
        getattr(pipe, name).to(accelerator.device)

    # 3. Encode every image and caption once (main process first, the others read its cache).
    with accelerator.main_process_first():
        before, after = cache_pairs(
            pipe, pairs, config.resolution, config.max_sequence_length, out_dir / "cache", config.buckets
        )
    if owned:
        for name in (*encoders, "vae"):
            setattr(pipe, name, None)
    transformer = pipe.transformer

    # 4-5. The stages; a borrowed transformer gets its weights back whatever happens.
    saved_base: dict[str, torch.Tensor] = {}
    try:
        stages = _train_stages(transformer, before, after, config, out_dir, accelerator, stop_after, saved_base, owned)
    finally:
        if getattr(transformer, "peft_config", None):
            transformer.unload_lora()
        with torch.no_grad():
            for module, weight in saved_base.items():
                transformer.get_submodule(module).weight.copy_(weight)
    path = out_dir / WEIGHT_NAME
    if any(stage.steps < config.steps for stage in stages.values()):
        last = next(reversed(stages.values()))
        return TrainResult(last.lora, path, {}, stages, complete=False)

    # 6. Save the kept LoRA with modelspec and provenance metadata (main process only).
    metadata = {
        **modelspec(
            f"artaug {config.mode} LoRA (iteration {config.iteration})",
            base_model,
            config.resolution,
            "ArtAug differential LoRA: the move from before to after images",
            "qwen-image" if is_qwen_image(transformer) else "flux",
        ),
        "artaug.mode": config.mode,
        "artaug.iteration": str(config.iteration),
        "artaug.base_model": base_model,
        "artaug.dataset_hash": data_hash,
        "artaug.num_pairs": str(len(pairs)),
        "artaug.config": json.dumps(config.to_dict(), sort_keys=True),
        "artaug.final_loss": f"{_tail_mean(stages['stage2'].losses):.6g}",
        **{f"artaug.{k}": v for k, v in (extra_metadata or {}).items()},
    }
    kohya_path = None
    if accelerator.is_main_process:
        save_lora(path, stages["stage2"].lora, metadata)
        if kohya:
            kohya_path = save_kohya(
                out_dir / "pytorch_lora_weights_kohya.safetensors", stages["stage2"].lora, metadata
            )
    accelerator.wait_for_everyone()
    return TrainResult(stages["stage2"].lora, path, metadata, stages, kohya_path)


RUN_FILE = "train_run.json"
# Settings that change how a run is shown or kept, not what it computes: a resume may change them.
_RESUMABLE = ("progress", "checkpoint_every", "keep_checkpoints")


def run_identity(config: TrainConfig, data_hash: str, base_model: str, num_pairs: int) -> dict[str, Any]:
    """What makes a training run this run: its data, its base model and every setting that changes the result."""
    settings = {k: v for k, v in config.to_dict().items() if k not in _RESUMABLE}
    return {"dataset_hash": data_hash, "num_pairs": num_pairs, "base_model": base_model, "config": settings}


def check_resume(out_dir: Path, identity: dict[str, Any]) -> None:
    """Refuse to continue (or to relabel) a run in ``out_dir`` that was made from other data or settings."""
    record = out_dir / RUN_FILE
    if not record.is_file():
        leftovers = [p.name for p in (out_dir / "stage1", out_dir / "stage2", out_dir / WEIGHT_NAME) if p.exists()]
        if leftovers:
            raise ValueError(
                f"{out_dir} holds training files ({', '.join(leftovers)}) but no {RUN_FILE} saying how they were "
                "made: choose a new --out (or --overwrite to start over)"
            )
        return
    previous = read_json(record, what="training run record")
    if previous == identity:
        return
    if not isinstance(previous, dict):
        raise ValueError(f"{record} is damaged (not a JSON object): choose a new --out, or --overwrite to start over")
    differences = []
    for key in ("dataset_hash", "num_pairs", "base_model"):
        if previous.get(key) != identity[key]:
            differences.append(f"{key} {previous.get(key)!r} → {identity[key]!r}")
    old = previous.get("config", {}) if isinstance(previous.get("config"), dict) else {}
    for key, value in identity["config"].items():
        if old.get(key) != value:
            differences.append(f"{key} {old.get(key)!r} → {value!r}")
    if differences:
        raise ValueError(
            f"{out_dir} holds a training run of other data or settings ({'; '.join(differences)}): it can resume "
            "only the same run. Choose a new --out, or pass --overwrite to start over"
        )


def _tail_mean(losses: list[float], n: int = 20) -> float:
    tail = losses[-n:]
    return sum(tail) / len(tail) if tail else math.nan


def _train_stages(transformer, before, after, config, out_dir, accelerator, stop_after, saved_base, owned):
    """Stage 1 (differential mode) trained and fused, then stage 2, left in place as adapter ``artaug``."""
    stages: dict[str, StageResult] = {}
    if config.mode == "differential":
        stages["stage1"] = train_stage(transformer, before, config, out_dir / "stage1", accelerator, 1, stop_after)
        if stages["stage1"].steps < config.steps:
            return stages
        if not owned:
            # The fused stage-1 update is put back out of a borrowed model from this exact copy afterwards.
            for module in stages["stage1"].lora:
                saved_base[module] = transformer.get_submodule(module).weight.detach().to("cpu", copy=True)
        transformer.fuse_lora(adapter_names=[ADAPTER])
        transformer.unload_lora()  # keeps the fused weights, drops the LoRA layers
    stages["stage2"] = train_stage(transformer, after, config, out_dir / "stage2", accelerator, 2, stop_after)
    return stages
