"""Checks and small rules every painter family shares: what a request may ask, where a revision starts, where a
model comes from. No model is needed here, so callers can check before any weights load."""

from __future__ import annotations

import os

import torch

from artaug.files import read_json
from artaug.painter import regions
from artaug.types import Painting, PaintRequest


def check_request(request: PaintRequest, init: Painting | None = None) -> None:
    """Raise ``ValueError`` for a request the painter cannot paint; needs no model, so callers can check first."""
    regions.token_grid(request.height, request.width)
    if not 1 <= request.max_sequence_length <= 512:
        raise ValueError(f"max_sequence_length must be in [1, 512], got {request.max_sequence_length}")
    if request.edits and request.regional == "attention" and request.region_max_sequence_length < 1:
        raise ValueError(f"region_max_sequence_length must be >= 1, got {request.region_max_sequence_length}")
    if request.strength < 1.0 and init is None:
        raise ValueError("strength < 1 revises an existing painting: pass init=")
    if init is not None and (init.request.height, init.request.width) != (request.height, request.width):
        raise ValueError(
            f"init painting is {init.request.width}x{init.request.height}, "
            f"the request is {request.width}x{request.height}"
        )


def region_bucket(tokens: int) -> int:
    """The padded number of local-prompt tokens a compiled transformer sees: the next power of two from 32.

    Up to 8 local prompts of up to 64 tokens fall into at most 5 buckets (32 ... 512), so a compiled transformer
    compiles each block at most 6 times (with the plain shape) and never again.
    """
    return 32 if tokens <= 32 else 1 << (tokens - 1).bit_length()


def start_index(num_steps: int, strength: float) -> int:
    """Index of the first step a revision at ``strength`` runs (FluxImg2ImgPipeline's rule): 0.5 of 4 steps -> 2."""
    return int(max(num_steps - num_steps * strength, 0))


def region_masks(request: PaintRequest) -> torch.Tensor:
    """``(N, S)`` token masks of the request's edits, blurred when ``request.blur_sigma`` > 0."""
    masks = regions.token_masks([e.box for e in request.edits], request.height, request.width)
    if request.blur_sigma > 0:
        masks = regions.blur_token_masks(masks, request.height, request.width, sigma=request.blur_sigma)
    return masks


# Instruction-editing pipelines: an editor (``painter.editor``), never the painter itself.
EDITORS = ("FluxKontextPipeline", "QwenImageEditPipeline", "QwenImageEditPlusPipeline")
# Hub ids whose pipeline class is known without downloading anything.
HUB_PIPELINES: dict[str, str] = {
    "black-forest-labs/FLUX.1-dev": "FluxPipeline",
    "black-forest-labs/FLUX.1-schnell": "FluxPipeline",
    "black-forest-labs/FLUX.1-Krea-dev": "FluxPipeline",
    "Qwen/Qwen-Image": "QwenImagePipeline",
    "black-forest-labs/FLUX.1-Kontext-dev": "FluxKontextPipeline",
    "Qwen/Qwen-Image-Edit": "QwenImageEditPipeline",
    "Qwen/Qwen-Image-Edit-2509": "QwenImageEditPlusPipeline",
}


def pipeline_name(model: str, what: str = "painter") -> str:
    """The diffusers pipeline class of a local folder or a known hub id; a clear error for anything else."""
    folder = os.path.expanduser(model)
    if os.path.isdir(folder) and os.path.isfile(os.path.join(folder, "model_index.json")):
        return pipeline_class_name(folder)
    if os.path.isfile(folder):
        raise NotADirectoryError(f"{what} {model!r} is a file; expected a diffusers folder or a hub id")
    if os.path.exists(folder) or model.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"{what} folder {model!r} is not a diffusers pipeline folder (no model_index.json)")
    if model not in HUB_PIPELINES:
        raise ValueError(
            f"{what} {model!r} is not a hub id artaug knows ({', '.join(HUB_PIPELINES)}); download it "
            f"(`hf download {model} --local-dir DIR`) and pass the folder: its model_index.json names the pipeline"
        )
    return HUB_PIPELINES[model]


def pipeline_class_name(folder: str | os.PathLike) -> str:
    """The diffusers pipeline class a model folder's ``model_index.json`` names (``_class_name``)."""
    index = os.path.join(folder, "model_index.json")
    data = read_json(index, what="model index", max_bytes=1024 * 1024)
    name = data.get("_class_name") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name:
        raise ValueError(f"{index} names no pipeline class (_class_name): not a diffusers pipeline folder")
    return name


def resolve_source(id_or_dir: str, pipeline: str | None = None) -> str:
    """A local folder (made absolute) or a hub id; a path-like string that does not exist is an error, and so is a
    folder holding another pipeline than ``pipeline``."""
    expanded = os.path.expanduser(id_or_dir)
    if os.path.exists(expanded):
        if not os.path.isdir(expanded):
            raise NotADirectoryError(f"painter {id_or_dir!r} is a file; expected a diffusers folder or a hub id")
        if not os.path.isfile(os.path.join(expanded, "model_index.json")):
            raise FileNotFoundError(
                f"painter folder {id_or_dir!r} has no model_index.json: not a diffusers pipeline folder "
                "(expected the layout of black-forest-labs/FLUX.1-dev or Qwen/Qwen-Image)"
            )
        found = pipeline_class_name(expanded)
        if pipeline is not None and found != pipeline:
            raise ValueError(
                f"painter folder {id_or_dir!r} holds a {found}, not a {pipeline}: load it with "
                "artaug.painter.load_painter, which picks the family from model_index.json"
            )
        return os.path.abspath(expanded)
    looks_like_path = id_or_dir.startswith(("/", ".", "~")) or id_or_dir.count("/") > 1 or os.sep + os.sep in id_or_dir
    if looks_like_path or not id_or_dir.strip():
        raise FileNotFoundError(f"painter folder {id_or_dir!r} does not exist")
    return id_or_dir


def out_of_memory_hint(preset: str, error: BaseException) -> str:
    """What to try after running out of GPU memory with ``preset`` (``painter.memory``)."""
    following = {"none": "24gb", "80gb": "48gb", "48gb": "24gb", "24gb": "16gb"}.get(preset)
    first = str(error).splitlines()[0][:200] if str(error) else "out of memory"
    if following is None:
        return (f"out of GPU memory even with --memory {preset} ({first}); paint smaller images, or run the critic "
                "as an endpoint (--critic http://...) so that the whole card is the painter's")  # fmt: skip
    return (f"out of GPU memory with memory preset {preset!r} ({first}); try --memory {following}, and an endpoint "
            "critic (--critic http://...) leaves the whole card to the painter")  # fmt: skip


def execution_device(module: torch.nn.Module) -> torch.device:
    """Where a module's inputs must go; with CPU offload that is the hook's device, not the weights'."""
    try:
        from diffusers.utils.torch_utils import get_module_execution_device
    except ImportError:  # diffusers < 0.42
        return next(module.parameters()).device
    return get_module_execution_device(module)
