"""LoRA files: diffusers format with metadata, kohya / ComfyUI export, and reading those and DiffSynth-Studio's
files back as deltas.

Inside artaug a LoRA is a plain dict ``{module: (A, B, scale)}`` keyed by the transformer's module names
(``transformer_blocks.0.attn.to_q``), with ``A`` of shape (r, in), ``B`` of shape (out, r) and the layer's update
``scale * B @ A``. The diffusers file stores ``transformer.<module>.lora_A.weight`` / ``lora_B.weight`` and puts
``r`` and ``lora_alpha`` in the ``lora_adapter_metadata`` JSON, which ``FluxPipeline.load_lora_weights`` reads.

The kohya file follows sd-scripts' FLUX naming, which ComfyUI and diffusers' kohya converter both read: keys of the
original BFL checkpoint with ``.`` -> ``_`` under ``lora_unet_``, ``.lora_down.weight`` / ``.lora_up.weight`` /
``.alpha``. BFL fuses q, k, v (and, in single blocks, the MLP input) into one linear, so those LoRAs are written as
one LoRA of the fused layer: ``down`` = the stacked ``A``s, ``up`` = the block-diagonal ``B``s. That is exact.
Qwen-Image has no fused layers and no other checkpoint naming: its kohya keys are diffusers' module names with
``.`` -> ``_`` under ``lora_unet_`` (musubi-tuner's and ComfyUI's layout, which diffusers' Qwen converter reads).

Reading (``load_lora``) recognises the three layouts of ``artaug.painter.lora.lora_format``: diffusers, kohya (either
family, through diffusers' own converters) and DiffSynth-Studio's (the released ArtAug LoRAs).
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save

from artaug.files import atomic_write, loads_json
from artaug.painter.lora import WEIGHT_NAME, diffsynth_to_diffusers, lora_file, lora_format, read_lora_tensors

Lora = dict[str, tuple[torch.Tensor, torch.Tensor, float]]
KOHYA_WEIGHT_NAME = "pytorch_lora_weights_kohya.safetensors"
# Painter family -> modelspec architecture and implementation.
ARCHITECTURES = {
    "flux": ("flux-1-dev/lora", "https://github.com/black-forest-labs/flux"),
    "qwen-image": ("qwen-image/lora", "https://github.com/QwenLM/Qwen-Image"),
}
# Layers only Qwen-Image's blocks have: they tell a LoRA's family when nothing else does.
_QWEN_ONLY = re.compile(r"\.(img_mlp|txt_mlp|img_mod|txt_mod)\.")

# diffusers module (inside block i) -> (BFL layer, position in the fused layer, number of parts in it).
_DOUBLE = {
    "attn.to_q": ("img_attn_qkv", 0, 3),
    "attn.to_k": ("img_attn_qkv", 1, 3),
    "attn.to_v": ("img_attn_qkv", 2, 3),
    "attn.to_out.0": ("img_attn_proj", 0, 1),
    "ff.net.0.proj": ("img_mlp_0", 0, 1),
    "ff.net.2": ("img_mlp_2", 0, 1),
    "norm1.linear": ("img_mod_lin", 0, 1),
    "attn.add_q_proj": ("txt_attn_qkv", 0, 3),
    "attn.add_k_proj": ("txt_attn_qkv", 1, 3),
    "attn.add_v_proj": ("txt_attn_qkv", 2, 3),
    "attn.to_add_out": ("txt_attn_proj", 0, 1),
    "ff_context.net.0.proj": ("txt_mlp_0", 0, 1),
    "ff_context.net.2": ("txt_mlp_2", 0, 1),
    "norm1_context.linear": ("txt_mod_lin", 0, 1),
}
_SINGLE = {
    "attn.to_q": ("linear1", 0, 4),
    "attn.to_k": ("linear1", 1, 4),
    "attn.to_v": ("linear1", 2, 4),
    "proj_mlp": ("linear1", 3, 4),
    "proj_out": ("linear2", 0, 1),
    "norm.linear": ("modulation_lin", 0, 1),
}
_BLOCK = re.compile(r"^(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)$")


# ---------------------------------------------------------------------------------------------------------- diffusers


def lora_from_peft(state_dict: Mapping[str, torch.Tensor], alpha: float) -> Lora:
    """Group a peft state dict (``<module>.lora_A.weight`` ...) into ``{module: (A, B, alpha / r)}``."""
    lora: Lora = {}
    for key, a in state_dict.items():
        if not key.endswith(".lora_A.weight"):
            continue
        module = key[: -len(".lora_A.weight")].removeprefix("transformer.")
        b = state_dict[key.replace(".lora_A.", ".lora_B.")]
        lora[module] = (a.detach().float().cpu(), b.detach().float().cpu(), alpha / a.shape[0])
    if not lora:
        raise ValueError("no LoRA layers (*.lora_A.weight) in the state dict")
    return lora


def _uniform(lora: Lora) -> tuple[int, float]:
    """The single (rank, alpha) a diffusers file can declare; LoRAs that are not uniform get scales folded into B."""
    ranks = {a.shape[0] for a, _, _ in lora.values()}
    scales = {s for _, _, s in lora.values()}
    if len(ranks) != 1:
        raise ValueError(f"every module must have the same rank to be saved in diffusers format, got {sorted(ranks)}")
    rank = ranks.pop()
    return rank, (scales.pop() * rank if len(scales) == 1 else float(rank))


def _fold_scales(lora: Lora, scale: float) -> Lora:
    return {m: (a, b * (s / scale), scale) for m, (a, b, s) in lora.items()}


def modelspec(
    title: str, base_model: str, resolution: int | None = None, description: str = "", family: str = "flux"
) -> dict[str, str]:
    """Stability AI's ``modelspec`` (sai_model_spec 1.0.0) fields for a LoRA of FLUX.1 or (``family="qwen-image"``)
    Qwen-Image."""
    architecture, implementation = ARCHITECTURES[family]
    spec = {
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": architecture,
        "modelspec.implementation": implementation,
        "modelspec.title": title,
        "modelspec.date": datetime.date.today().isoformat(),
        "modelspec.description": description,
        "modelspec.author": "artaug",
        "modelspec.base_model": base_model,
        "modelspec.prediction_type": "flow",
    }
    if resolution:
        spec["modelspec.resolution"] = f"{resolution}x{resolution}"
    return spec


def save_lora(path: str | Path, lora: Lora, extra_metadata: Mapping[str, Any] | None = None) -> Path:
    """Write ``lora`` as a diffusers ``pytorch_lora_weights.safetensors`` (a directory gets that file name).

    ``extra_metadata`` (modelspec.*, artaug.*) is stored beside ``lora_adapter_metadata``; non-string values are
    JSON-encoded.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path / WEIGHT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    rank, alpha = _uniform(lora)
    lora = _fold_scales(lora, alpha / rank)
    tensors = {}
    for module, (a, b, _) in sorted(lora.items()):
        tensors[f"transformer.{module}.lora_A.weight"] = a.contiguous()
        tensors[f"transformer.{module}.lora_B.weight"] = b.contiguous()
    adapter = {
        "r": rank,
        "lora_alpha": alpha,
        "target_modules": sorted(lora),
        "init_lora_weights": True,
        "use_dora": False,
        "lora_bias": False,
    }
    # Extra metadata first: copied from another file, its format keys must not describe these tensors.
    metadata = _encode(extra_metadata)
    metadata["format"] = "pt"
    metadata["lora_adapter_metadata"] = json.dumps(
        {f"transformer.{k}": v for k, v in adapter.items()}, indent=2, sort_keys=True
    )
    atomic_write(path, save(tensors, metadata=metadata))
    return path


def _encode(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in (metadata or {}).items()}


def read_metadata(path: str | Path) -> dict[str, str]:
    with safe_open(str(_weights_file(path)), "pt") as f:
        return dict(f.metadata() or {})


def _weights_file(path: str | Path) -> Path:
    return lora_file(path)


def load_lora(path: str | Path) -> tuple[Lora, dict[str, str]]:
    """Read a LoRA file in diffusers', kohya's or DiffSynth-Studio's layout as ``{module: (A, B, scale)}`` plus its
    metadata.

    Only safetensors are read (nothing is unpickled); a file that is not a LoRA, whose keys map onto no FLUX.1 or
    Qwen-Image layer, has mismatched A/B shapes or holds NaN or infinite weights is a ``ValueError`` naming it.
    """
    path = lora_file(path)
    tensors, metadata = read_lora_tensors(path)
    scale = 1.0  # without metadata diffusers assumes alpha == r (scale 1); so do we
    layout = lora_format(tensors)
    if layout == "kohya":
        tensors = _from_kohya(tensors, path)
    elif layout == "diffsynth":
        tensors = diffsynth_to_diffusers(tensors, str(path))  # no alpha: scale 1, as DiffSynth-Studio applies them
    elif "lora_adapter_metadata" in metadata:
        adapter = loads_json(metadata["lora_adapter_metadata"], where=f"{path} lora_adapter_metadata")
        if not isinstance(adapter, dict):
            raise ValueError(f"{path}: lora_adapter_metadata is not a JSON object")
        if adapter.get("transformer.rank_pattern") or adapter.get("transformer.alpha_pattern"):
            raise ValueError(f"{path}: per-layer rank/alpha patterns are not supported; re-save it with one rank")
        alpha, rank = adapter.get("transformer.lora_alpha"), adapter.get("transformer.r")
        if alpha is not None and rank:
            scale = float(alpha) / rank
    if not math.isfinite(scale):
        raise ValueError(f"{path}: its alpha / rank is not a finite number")
    lora: Lora = {}
    for key, a in tensors.items():
        if key.endswith(".lora_A.weight"):
            module = key[: -len(".lora_A.weight")].removeprefix("transformer.")
            b = tensors.get(key.replace(".lora_A.", ".lora_B."))
            if b is None or a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
                raise ValueError(f"{path}: layer {module} has no matching lora_B of rank {a.shape[0]}")
            lora[module] = (a.float(), b.float(), scale)
    if not lora:
        raise ValueError(f"{path} holds no LoRA layers (no *.lora_A.weight / *.lora_down.weight keys)")
    return lora, metadata


def _from_kohya(tensors: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """kohya / ComfyUI names through diffusers' own reader of the family they name (alpha folded in, scale 1)."""
    from diffusers import FluxPipeline, QwenImagePipeline

    flux = any(k.startswith(("lora_unet_double_blocks_", "lora_unet_single_blocks_")) for k in tensors)
    family, reader = ("FLUX.1", FluxPipeline) if flux else ("Qwen-Image", QwenImagePipeline)
    try:
        return reader.lora_state_dict(dict(tensors))
    except (KeyError, ValueError, RuntimeError, IndexError) as error:
        raise ValueError(
            f"{path}: its kohya keys do not map onto {family} ({type(error).__name__}: {error})"
        ) from None


def lora_delta(a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """The weight update ``scale * B @ A`` that a LoRA layer adds, in float64."""
    return scale * (b.double() @ a.double())


# ---------------------------------------------------------------------------------------------------------- kohya


def _kohya_name(module: str) -> tuple[str, int, int]:
    match = _BLOCK.match(module)
    table = _DOUBLE if match and match.group(1) == "transformer_blocks" else _SINGLE
    if not match or match.group(3) not in table:
        raise ValueError(f"module {module!r} has no kohya/BFL name (only FLUX block layers are exported)")
    kind = "double_blocks" if match.group(1) == "transformer_blocks" else "single_blocks"
    layer, part, parts = table[match.group(3)]
    return f"lora_unet_{kind}_{match.group(2)}_{layer}", part, parts


def lora_family(lora: Lora, metadata: Mapping[str, Any] | None = None) -> str:
    """``qwen-image`` or ``flux``: from the modelspec architecture when given, else from layers only Qwen-Image has."""
    architecture = str((metadata or {}).get("modelspec.architecture", ""))
    if architecture.startswith("qwen-image") or any(_QWEN_ONLY.search(module) for module in lora):
        return "qwen-image"
    return "flux"


def to_kohya(lora: Lora, family: str = "flux") -> dict[str, torch.Tensor]:
    """sd-scripts / ComfyUI LoRA tensors. FLUX.1: BFL names, fused layers get stacked downs and block-diagonal ups.
    Qwen-Image: module names with ``_`` under ``lora_unet_``, one entry per layer.

    A part of a fused layer that the LoRA does not adapt (``proj_mlp`` when only attention is trained) is written as
    zeros of the right shape: the fused layer's row split must be complete for readers to cut it apart.
    """
    if family == "qwen-image":
        out = {}
        for module, (a, b, scale) in sorted(lora.items()):
            name = "lora_unet_" + module.replace(".", "_")
            out |= {f"{name}.lora_down.weight": a.contiguous(), f"{name}.lora_up.weight": b.contiguous()}
            out[f"{name}.alpha"] = torch.tensor(scale * a.shape[0], dtype=torch.float32)
        return out
    groups: dict[str, dict[int, tuple[torch.Tensor, torch.Tensor, float]]] = {}
    sizes: dict[str, int] = {}
    for module, value in lora.items():
        name, part, parts = _kohya_name(module)
        groups.setdefault(name, {})[part] = value
        sizes[name] = parts
    out: dict[str, torch.Tensor] = {}
    for name, members in sorted(groups.items()):
        parts = sizes[name]
        scale = next(iter(members.values()))[2]
        ref_a = next(iter(members.values()))[0]
        downs, ups = [], []
        for part in range(parts):
            if part in members:
                a, b, s = members[part]
                downs.append(a)
                ups.append(b * (s / scale))
            else:
                downs.append(torch.zeros_like(ref_a))
                ups.append(torch.zeros(_part_rows(members, part, parts), ref_a.shape[0]))
        down = torch.cat(downs)
        up = torch.block_diag(*ups)
        rank = down.shape[0]
        out[f"{name}.lora_down.weight"] = down.contiguous()
        out[f"{name}.lora_up.weight"] = up.contiguous()
        out[f"{name}.alpha"] = torch.tensor(scale * rank, dtype=torch.float32)
    return out


def _part_rows(members: Mapping[int, tuple[torch.Tensor, torch.Tensor, float]], part: int, parts: int) -> int:
    """Output width of a missing part of a fused layer, from a present one: q, k, v share one width and the MLP
    input of a single block (part 3 of 4) is ``mlp_ratio`` = 4 times wider, as in every FLUX.1 model."""
    ref_part, (_, ref_b, _) = next(iter(members.items()))
    width = ref_b.shape[0] // (4 if parts == 4 and ref_part == 3 else 1)
    return width * (4 if parts == 4 and part == 3 else 1)


def save_kohya(path: str | Path, lora: Lora, extra_metadata: Mapping[str, Any] | None = None) -> Path:
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path / KOHYA_WEIGHT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = _encode(extra_metadata)
    metadata.pop("lora_adapter_metadata", None)  # describes diffusers-format tensors, not these
    family = lora_family(lora, extra_metadata)
    network = "networks.lora_qwen_image" if family == "qwen-image" else "networks.lora_flux"
    metadata.update({"format": "pt", "ss_network_module": network})
    atomic_write(path, save(to_kohya(lora, family), metadata=metadata))
    return path
