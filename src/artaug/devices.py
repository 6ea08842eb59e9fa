"""The one place that decides what ``device = "auto"`` and ``dtype = "auto"`` mean, for every model artaug loads.

- device ``auto``: the first CUDA device when torch sees one, else the CPU. A device that is asked for by name
  but does not exist here (``cuda`` on a machine without CUDA, ``cuda:3`` on a 2-GPU machine) is an error before
  any weight is read.
- dtype ``auto``: bfloat16 on a GPU (FLUX.1-dev's and Qwen2-VL's native precision), float32 on the CPU (CPU
  bfloat16 matmuls are slow and inexact).
"""

from __future__ import annotations

import re
from typing import Any

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|(cuda|xpu)(:\d{1,2})?)$")
DTYPES: tuple[str, ...] = ("auto", "bfloat16", "float16", "float32")


def check_device_name(name: str) -> str | None:
    """Why ``name`` is not a device artaug can use, or None (no torch needed: config validation calls this)."""
    if not isinstance(name, str) or not DEVICE_PATTERN.match(name):
        return f"unknown device {name!r}: use auto, cpu, cuda, cuda:N, mps or xpu"
    return None


def resolve_device(name: str = "auto") -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; a named device must exist on this machine."""
    import torch

    if problem := check_device_name(name):
        raise ValueError(problem)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = name.partition(":")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {name!r} was asked for, but torch sees no CUDA device here: use --device cpu")
        if index and int(index) >= count:
            raise ValueError(f"device {name!r} does not exist: torch sees {count} CUDA device(s)")
    elif kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was asked for, but this torch build or machine has no MPS")
    elif kind == "xpu" and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        raise ValueError(f"device {name!r} was asked for, but torch sees no XPU device here")
    return name


def resolve_dtype(name: str, device: str) -> Any:
    """``auto`` → bfloat16 on an accelerator, float32 on the CPU; otherwise the named torch dtype."""
    import torch

    if name == "auto":
        return torch.float32 if device == "cpu" else torch.bfloat16
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}: use {', '.join(DTYPES)}")
    return getattr(torch, name)
