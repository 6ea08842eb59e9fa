"""Reading a LoRA file safely, before it goes near a model, in the key layouts users bring.

Safetensors only, LoRA keys present, every weight finite: a file that is not a LoRA, or holds NaNs that would paint
black images, is a clear error and not a broken painting. Three layouts are recognised (``lora_format``):

* ``diffusers`` -- ``transformer.<module>.lora_A.weight`` / ``lora_B.weight`` (``save_lora_weights``; peft);
* ``kohya`` -- ``lora_unet_<module with _>.lora_down.weight`` / ``lora_up.weight`` / ``.alpha`` (sd-scripts,
  ComfyUI); diffusers' own converters read these;
* ``diffsynth`` -- DiffSynth-Studio's layout, in which the released ArtAug LoRAs come: its own module names without
  a prefix, often with peft's adapter name (``.lora_A.default.weight``), no alpha (scale 1, as DiffSynth-Studio
  applies them). For FLUX.1 the names are those of DiffSynth-Studio's ``FluxDiT`` (``blocks.N.attn.a_to_qkv``,
  ``single_blocks.N.to_qkv_mlp``, ...), whose fused layers are split here into diffusers' ``to_q``/``to_k``/``to_v``
  (and ``proj_mlp``) exactly: each part keeps the shared ``A`` and its rows of ``B``. For Qwen-Image they are
  diffusers' own module names (``transformer_blocks.N.attn.to_q``).

``BasePainter.load_lora`` passes diffusers and kohya files to ``load_lora_weights`` as they are and DiffSynth-Studio
files converted (``loadable_lora``); ``artaug.train.lora_io`` reads all three as deltas.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

WEIGHT_NAME = "pytorch_lora_weights.safetensors"
LORA_KEY_SUFFIXES = (".lora_A.weight", ".lora_B.weight", ".lora_down.weight", ".lora_up.weight", ".alpha",
                     ".lora_A.default.weight", ".lora_B.default.weight")  # fmt: skip
FORMATS = ("diffusers", "kohya", "diffsynth")
# DiffSynth-Studio's FluxDiT layer (inside a block) -> diffusers' FluxTransformer2DModel layers it fuses, in order,
# with each part's share of the fused output rows (q, k, v: one part of the width each; a single block's MLP input:
# four parts).
_DIFFSYNTH_DOUBLE = {
    "attn.a_to_qkv": (("attn.to_q", 1), ("attn.to_k", 1), ("attn.to_v", 1)),
    "attn.b_to_qkv": (("attn.add_q_proj", 1), ("attn.add_k_proj", 1), ("attn.add_v_proj", 1)),
    "attn.a_to_out": (("attn.to_out.0", 1),),
    "attn.b_to_out": (("attn.to_add_out", 1),),
    "ff_a.0": (("ff.net.0.proj", 1),),
    "ff_a.2": (("ff.net.2", 1),),
    "ff_b.0": (("ff_context.net.0.proj", 1),),
    "ff_b.2": (("ff_context.net.2", 1),),
    "norm1_a.linear": (("norm1.linear", 1),),
    "norm1_b.linear": (("norm1_context.linear", 1),),
}
_DIFFSYNTH_SINGLE = {
    "to_qkv_mlp": (("attn.to_q", 1), ("attn.to_k", 1), ("attn.to_v", 1), ("proj_mlp", 4)),
    "proj_out": (("proj_out", 1),),
    "norm.linear": (("norm.linear", 1),),
}
_DIFFSYNTH_KEY = re.compile(
    r"^(?:pipe\.dit\.|dit\.)?(blocks|single_blocks|transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)\.lora_([AB])(?:\.default)?\.weight$"
)


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


def lora_format(tensors: dict[str, torch.Tensor]) -> str:
    """Which key layout a LoRA's tensors are in: ``diffusers``, ``kohya`` or ``diffsynth`` (see the module)."""
    keys = list(tensors)
    if any(k.endswith((".lora_down.weight", ".lora_up.weight")) for k in keys):
        return "kohya"
    if any(_DIFFSYNTH_KEY.match(k) for k in keys) and not any(k.startswith("transformer.") for k in keys):
        return "diffsynth"
    return "diffusers"


def diffsynth_to_diffusers(tensors: dict[str, torch.Tensor], where: str = "LoRA") -> dict[str, torch.Tensor]:
    """A DiffSynth-Studio LoRA (FLUX.1 or Qwen-Image names) as diffusers' ``transformer.<module>.lora_A/B.weight``
    state dict, scale 1; fused FLUX layers split exactly. ``ValueError`` naming the first key that maps nowhere."""
    pairs: dict[tuple[str, str, str], dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        if key.endswith(".alpha"):
            continue
        match = _DIFFSYNTH_KEY.match(key)
        if match is None:
            raise ValueError(
                f"{where}: key {key!r} is not in DiffSynth-Studio's LoRA layout (blocks.N.<layer>.lora_A)"
            )
        kind, index, layer, side = match.groups()
        pairs.setdefault((kind, index, layer), {})[side] = tensor
    out: dict[str, torch.Tensor] = {}
    for (kind, index, layer), sides in pairs.items():
        if set(sides) != {"A", "B"}:
            raise ValueError(f"{where}: DiffSynth-Studio layer {kind}.{index}.{layer} has no lora_A/lora_B pair")
        a, b = sides["A"], sides["B"]
        if kind.endswith("transformer_blocks"):  # diffusers' own module names (DiffSynth-Studio's Qwen-Image, peft)
            parts, block = ((layer, 1),), kind
        else:
            table = _DIFFSYNTH_DOUBLE if kind == "blocks" else _DIFFSYNTH_SINGLE
            if layer not in table:
                raise ValueError(
                    f"{where}: DiffSynth-Studio layer {kind}.{index}.{layer} maps to no FLUX.1 layer "
                    f"(known: {', '.join(table)})"
                )
            parts, block = table[layer], "transformer_blocks" if kind == "blocks" else "single_transformer_blocks"
        unit, rest = divmod(b.shape[0], sum(share for _, share in parts))
        if rest:
            raise ValueError(f"{where}: DiffSynth-Studio layer {kind}.{index}.{layer} has {b.shape[0]} output rows, "
                             f"which do not split into {', '.join(m for m, _ in parts)}")  # fmt: skip
        start = 0
        for module, share in parts:
            out[f"transformer.{block}.{index}.{module}.lora_A.weight"] = a
            out[f"transformer.{block}.{index}.{module}.lora_B.weight"] = b[start : start + share * unit]
            start += share * unit
    return out


def loadable_lora(
    path: str | Path, transformer: torch.nn.Module | None = None
) -> tuple[str | dict[str, torch.Tensor], str]:
    """What ``load_lora_weights`` should be given for a local LoRA file, and the file's format: the file itself in
    diffusers' or kohya's layout (diffusers reads both, with their alpha), a converted state dict in
    DiffSynth-Studio's. With ``transformer``, a DiffSynth-Studio layer the painter lacks (or whose shapes differ) is
    a clear error."""
    tensors, _ = read_lora_tensors(path)
    layout = lora_format(tensors)
    if layout != "diffsynth":
        return str(lora_file(path)), layout
    state = diffsynth_to_diffusers(tensors, str(path))
    if transformer is not None:
        for key, tensor in state.items():
            module = key.removeprefix("transformer.").rsplit(".lora_", 1)[0]
            try:
                layer = transformer.get_submodule(module)
            except AttributeError:
                raise ValueError(
                    f"LoRA {path} (DiffSynth-Studio format) adapts {module}, which the painter lacks"
                ) from None
            want = layer.in_features if ".lora_A." in key else layer.out_features
            have = tensor.shape[1] if ".lora_A." in key else tensor.shape[0]
            if have != want:
                raise ValueError(f"LoRA {path} (DiffSynth-Studio format): {module} is {have} wide here, {want} in the "
                                 "painter: it was made for another model")  # fmt: skip
    return state, layout
