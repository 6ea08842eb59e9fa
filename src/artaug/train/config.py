"""The training configuration: one typed dataclass, documented field by field, loadable from TOML."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

Mode = Literal["differential", "plain"]
TimestepSampling = Literal["shifted", "logit_normal"]
MixedPrecision = Literal["no", "bf16", "fp16"]
Optimizer = Literal["adamw", "adamw8bit"]

# Every linear layer inside FLUX's double-stream (``transformer_blocks``) and single-stream
# (``single_transformer_blocks``) blocks that LoRA recipes usually adapt. Single blocks have no ``to_out``: their
# attention output and MLP output are fused in ``proj_out``.
FLUX_TARGET_MODULES: tuple[str, ...] = (
    "attn.to_q",
    "attn.to_k",
    "attn.to_v",
    "attn.to_out.0",
    "attn.add_q_proj",
    "attn.add_k_proj",
    "attn.add_v_proj",
    "attn.to_add_out",
    "ff.net.0.proj",
    "ff.net.2",
    "ff_context.net.0.proj",
    "ff_context.net.2",
    "proj_mlp",
    "proj_out",
)


def _f(default: Any, help: str, **kwargs: Any) -> Any:
    if isinstance(default, (list, tuple, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass
class TrainConfig:
    """How to train one (differential) LoRA. Defaults follow common FLUX.1-dev LoRA recipes for a 24-80 GB GPU."""

    mode: Mode = _f(
        "differential",
        "differential: LoRA-1 on the before images is fused, LoRA-2 on the after images "
        "is kept; plain: one LoRA on the after images.",
    )
    resolution: int = _f(
        1024,
        "Training images are resized (shorter side) and center-cropped to this square size "
        "in pixels; a multiple of 16.",
    )
    buckets: bool = _f(
        False,
        "Aspect-ratio buckets: each image keeps its shape, resized to about resolution² pixels "
        "(multiples of 16); a batch holds one bucket. Off: center-crop squares.",
    )
    rank: int = _f(16, "LoRA rank r.")
    alpha: float = _f(16.0, "LoRA alpha; the update is scaled by alpha / rank.")
    target_modules: tuple[str, ...] = _f(
        FLUX_TARGET_MODULES,
        "Module name suffixes adapted inside the transformer blocks (only block-level layers are matched).",
    )
    learning_rate: float = _f(1e-4, "AdamW learning rate.")
    lr_warmup_steps: int = _f(0, "Linear warm-up steps before the constant learning rate.")
    weight_decay: float = _f(1e-4, "AdamW weight decay on the LoRA parameters.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm; 0 disables clipping.")
    steps: int = _f(1000, "Optimizer steps per stage (differential mode trains two stages).")
    batch_size: int = _f(1, "Examples per micro-batch, per process.")
    gradient_accumulation_steps: int = _f(1, "Micro-batches accumulated into one optimizer step.")
    mixed_precision: MixedPrecision = _f(
        "bf16",
        "Frozen base weights and autocast in this precision; LoRA "
        "parameters and the optimizer stay in float32. 'no' = float32 throughout.",
    )
    gradient_checkpointing: bool = _f(False, "Recompute block activations in the backward pass to save memory.")
    optimizer: Optimizer = _f("adamw", "adamw (torch) or adamw8bit (bitsandbytes; install the train8bit extra).")
    timestep_sampling: TimestepSampling = _f(
        "shifted",
        "shifted: sigma drawn uniformly from a shifted 1000-step "
        "table and the loss weighted around mid-schedule (DiffSynth-Studio's "
        "FLUX recipe); logit_normal: sigma = shift(sigmoid(N(mean, std))), "
        "unweighted (SD3 paper).",
    )
    shift: float = _f(3.0, "Sigma shift s: sigma' = s*sigma / (1 + (s-1)*sigma).")
    logit_mean: float = _f(0.0, "Mean of the logit-normal timestep density.")
    logit_std: float = _f(1.0, "Standard deviation of the logit-normal timestep density.")
    guidance: float = _f(1.0, "FLUX guidance-embedding value during training (1.0 = the distilled 'no guidance').")
    max_sequence_length: int = _f(512, "T5 tokens per caption.")
    seed: int = _f(0, "Seed of the LoRA initialisation and of every random draw of the training loop.")
    checkpoint_every: int = _f(250, "Save a resumable checkpoint every N optimizer steps (0: only at the end).")
    keep_checkpoints: int = _f(2, "How many of the newest checkpoints to keep per stage.")
    iteration: int = _f(0, "Bootstrap iteration this LoRA belongs to (provenance only).")
    progress: bool = _f(True, "Show a progress bar with the loss.")

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)
        problems = []
        if self.mode not in ("differential", "plain"):
            problems.append(f"mode must be 'differential' or 'plain', got {self.mode!r}")
        if self.resolution <= 0 or self.resolution % 16:
            problems.append(f"resolution must be a positive multiple of 16, got {self.resolution}")
        for name in ("rank", "steps", "batch_size", "gradient_accumulation_steps", "max_sequence_length"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.alpha <= 0 or self.learning_rate <= 0 or self.shift <= 0 or self.logit_std <= 0:
            problems.append("alpha, learning_rate, shift and logit_std must be > 0")
        if self.timestep_sampling not in ("shifted", "logit_normal"):
            problems.append(f"timestep_sampling must be 'shifted' or 'logit_normal', got {self.timestep_sampling!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            problems.append(f"mixed_precision must be 'no', 'bf16' or 'fp16', got {self.mixed_precision!r}")
        if self.optimizer not in ("adamw", "adamw8bit"):
            problems.append(f"optimizer must be 'adamw' or 'adamw8bit', got {self.optimizer!r}")
        if not self.target_modules:
            problems.append("target_modules must not be empty")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        """Read a config; a ``[train]`` table is used if present, else the top level."""
        with open(path, "rb") as f:
            data = tomllib.load(f)
        return cls.from_dict(data.get("train", data))

    def save_toml(self, path: str | Path) -> Path:
        import tomli_w

        path = Path(path)
        path.write_text(tomli_w.dumps({"train": self.to_dict()}))
        return path

    @staticmethod
    def help(name: str) -> str:
        return next(f.metadata["help"] for f in fields(TrainConfig) if f.name == name)
