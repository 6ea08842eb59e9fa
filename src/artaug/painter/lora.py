"""Reading a LoRA file safely, before it goes near a model: safetensors only, LoRA keys present, every weight finite.

``FluxPainter.load_lora`` checks a local file with this before diffusers loads it (so a file that is not a LoRA, or
holds NaNs that would paint black images, is a clear error and not a broken painting), and the trainer's LoRA
reader (``artaug.train.lora_io``) builds on it.
"""

from __future__ import annotations

from pathlib import Path

import torch

WEIGHT_NAME = "pytorch_lora_weights.safetensors"
LORA_KEY_SUFFIXES = (".lora_A.weight", ".lora_B.weight", ".lora_down.weight", ".lora_up.weight", ".alpha")


def lora_file(path: str | Path) -> Path:
    """The weights file of a LoRA given as a file or as a folder holding ``pytorch_lora_weights.safetensors``."""
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"LoRA file {path} does not exist")
    return path


def read_lora_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every tensor and the metadata of a LoRA safetensors file; ``ValueError`` naming the file if it is not one."""
    from safetensors import SafetensorError, safe_open

    path = lora_file(path)
    try:
        with safe_open(str(path), "pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path} is not a safetensors LoRA file ({error})") from None
    if not any(key.endswith(LORA_KEY_SUFFIXES) for key in tensors):
        raise ValueError(f"{path} holds no LoRA layers (no *.lora_A.weight / *.lora_down.weight keys)")
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not tensor.isfinite().all():
            raise ValueError(f"{path}: {key} holds NaN or infinite weights")
    return tensors, metadata


def loadable_lora(path: str | Path, transformer: torch.nn.Module) -> str | dict[str, torch.Tensor]:
    """What ``load_lora_weights`` should be given for a local LoRA file: the file itself in diffusers' layout."""
    read_lora_tensors(path)
    return str(path)
