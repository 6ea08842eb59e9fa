"""One typed configuration for every stage: painter, critic, judge, loop, synth, train and bootstrap.

Defaults are the real-use defaults (FLUX.1-dev and Qwen2-VL-7B-Instruct on a GPU) and are documented on each field;
the CLI's flags and help are generated from these fields (``artaug.cli.options``), so nothing restates a default.
A TOML file overrides them section by section (``[painter]``, ``[loop]``, ``[synth.filters]``, ...), then ``--set
section.key=value``, then a command's own flags. Every section validates itself when it is created (see
``artaug.settings``), so ``load_config`` either returns a valid config or raises one ``ConfigError`` naming every bad
setting, before any model loads or any file is written. The resolved config is dumped as TOML next to every output.

Importing this module does not import torch.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from artaug.devices import DTYPES, check_device_name
from artaug.files import read_toml, write_toml
from artaug.settings import ConfigError, Section, setting
from artaug.types import CONVENTIONS, REGIONAL_MODES

DEFAULT_PAINTER = "black-forest-labs/FLUX.1-dev"
DEFAULT_CRITIC = "Qwen/Qwen2-VL-7B-Instruct"
DEFAULT_CLIP = "openai/clip-vit-large-patch14"
# The published aesthetic head (linear MLP, MSE loss) as "hub repo id/file name"; a local file also works.
DEFAULT_AESTHETIC_HEAD = "camenduru/improved-aesthetic-predictor/sac+logos+ava1-l14-linearMSE.pth"

OFFLOAD_MODES = ("none", "model", "sequential")
# Memory presets: what a card of that size needs to paint FLUX.1-dev (about 24 GB of bfloat16 weights) beside an
# in-process Qwen2-VL-7B critic (about 16 GB). Each is a bundle of settings; a setting given explicitly wins.
MEMORY_PRESETS: dict[str, dict[str, Any]] = {
    "80gb": {},  # everything stays on the GPU
    "48gb": {"critic.park": True, "painter.vae_tiling": True},  # the critic waits on the CPU while the painter works
    "24gb": {"painter.offload": "model", "critic.park": True, "painter.vae_tiling": True},
    "16gb": {"painter.offload": "sequential", "critic.park": True, "painter.vae_tiling": True},
}
ATTENTION_IMPLS = ("lse", "grouped", "mask")
# How a round fixes what the critic asked for (``artaug.loop.fixes``).
FIXES = ("regional", "edit", "auto")
TEMPLATES = ("auto", "grounding", "json")
SIMILARITIES = ("ssim", "pixels", "clip")

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
# Qwen-Image's double-stream blocks share FLUX's attention names; their MLPs are ``img_mlp`` / ``txt_mlp``.
QWEN_IMAGE_TARGET_MODULES: tuple[str, ...] = (
    *FLUX_TARGET_MODULES[:8],
    "img_mlp.net.0.proj",
    "img_mlp.net.2",
    "txt_mlp.net.0.proj",
    "txt_mlp.net.2",
)


def _multiple_of_16(value: int) -> str | None:
    return None if value % 16 == 0 else f"must be a multiple of 16 (FLUX packs 2x2 latents of 8 px), got {value}"


def _template(value: str) -> str | None:
    # A packaged template's name, or a template file of one's own.
    if value in TEMPLATES or re.fullmatch(r"(json|grounding)-v\d+", value) or Path(value).is_file():
        return None
    return f"must be auto, grounding, json, a packaged template name or an existing file; got {value!r}"


def _optional_model_spec(value: str) -> str | None:
    return None if not value else _model_spec(value)


def _env_name(value: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", value) else f"{value!r} is not a variable name"


def _model_spec(value: str) -> str | None:
    """A hub id, a URL, or a local path that exists (a path-like spec that does not is a typo, not a hub id)."""
    if not value.strip():
        return "must name a hub id, a local folder or a URL"
    if value.startswith(("http://", "https://")):
        return None
    looks_like_path = value.startswith(("/", ".", "~")) or value.count("/") > 1 or "\\" in value
    if looks_like_path and not os.path.exists(os.path.expanduser(value)):
        return f"{value!r} does not exist (a local folder or file was meant; hub ids look like owner/name)"
    return None


@dataclass(frozen=True)
class PainterConfig(Section):
    """The painter: which text-to-image pipeline (FLUX.1 or Qwen-Image), where it runs, and the first painting's
    settings (diffusers' names)."""

    name = "painter"

    model: str = setting(
        DEFAULT_PAINTER,
        "hub id or local folder of a FLUX.1 or Qwen-Image pipeline (the family is read from its model_index.json)",
        flag="painter",
        check=_model_spec,
    )
    dtype: str = setting("auto", "torch dtype; auto: bfloat16 on a GPU, float32 on the CPU", choices=DTYPES)
    device: str = setting(
        "auto", "torch device: auto (CUDA when available), cpu, cuda, cuda:N", check=check_device_name
    )
    offload: str = setting(
        "none", "CPU offload: model (components visit the GPU while they run; 24 GB cards) or sequential (slowest)",
        choices=OFFLOAD_MODES,
    )  # fmt: skip
    attention_impl: str = setting(
        "lse", "how attention mode computes regional attention: lse (one unmasked call + small ones merged by "
        "log-sum-exp), grouped (unmasked calls per group of queries) or mask (the masked reference)",
        choices=ATTENTION_IMPLS,
    )  # fmt: skip
    lora: str = setting(
        "", "optional LoRA (file, folder or hub id) loaded and fused before painting", check=_optional_model_spec
    )
    compile: bool = setting(
        False, "torch.compile the repeated transformer blocks (shapes in buckets: no recompile across rounds)"
    )
    memory: str = setting(
        "none",
        "memory preset for a GPU of this size (80gb, 48gb, 24gb, 16gb): offload, critic parking and VAE tiling as "
        "that card needs them; settings given explicitly win",
        choices=("none", *MEMORY_PRESETS),
    )
    vae_tiling: bool = setting(False, "decode and encode with a tiled VAE (large images on small cards)")
    quantize: str = setting(
        "none",
        "store the transformer's linear weights in float8 (fp8: half of bfloat16's memory, torchao's weight-only "
        "float8; install the fp8 extra)",
        choices=("none", "fp8"),
    )
    height: int = setting(1024, "image height in pixels", min=16, max=4096, check=_multiple_of_16)
    width: int = setting(1024, "image width in pixels", min=16, max=4096, check=_multiple_of_16)
    num_inference_steps: int = setting(
        28, "denoising steps of the first painting", min=1, max=1000, aliases=("steps",)
    )
    guidance_scale: float = setting(
        3.5, "guidance: FLUX.1-dev's distilled guidance; Qwen-Image's true CFG scale (> 1: one more pass per step)",
        min=0.0, max=100.0,
    )  # fmt: skip
    max_sequence_length: int = setting(512, "T5 tokens of the global prompt", min=1, max=512)
    editor: str = setting(
        "", "instruction-editing model for loop.fix = edit or auto: hub id or folder of FLUX.1-Kontext-dev or "
        "Qwen-Image-Edit (loaded once, beside the painter)", check=_optional_model_spec,
    )  # fmt: skip
    editor_guidance: float = setting(
        2.5, "the editor's guidance: FLUX.1-Kontext's distilled guidance, Qwen-Image-Edit's true CFG scale",
        min=0.0, max=100.0,
    )  # fmt: skip

    def check(self) -> list[str]:
        problems = []
        if self.offload != "none" and self.device == "cpu":
            problems.append(f"offload {self.offload!r} moves weights to an accelerator while they run; device is cpu")
        if self.compile and self.attention_impl != "lse":
            problems.append(f"compile needs attention_impl 'lse' (static shapes), got {self.attention_impl!r}")
        return problems


@dataclass(frozen=True)
class CriticConfig(Section):
    """The critic: an in-process VLM, an OpenAI-compatible endpoint, or notes written in advance."""

    name = "critic"

    model: str = setting(
        DEFAULT_CRITIC,
        "hub id or folder of a Qwen-family VLM, an OpenAI-compatible base URL, a notes file, or 'world' (the closed "
        "world's detector, for world paintings)",
        flag="critic",
        check=_model_spec,
    )
    served_model: str = setting(
        "", "model name to request from a URL critic (default: the server's first)", flag="model"
    )
    api_key_env: str = setting(
        "OPENAI_API_KEY", "environment variable holding the endpoint's API key", check=_env_name
    )
    template: str = setting(
        "auto", "instruction template: auto (grounding tokens in-process, JSON for URLs), grounding, json, or a file",
        check=_template,
    )  # fmt: skip
    convention: str = setting("auto", "box convention of the answers", choices=CONVENTIONS)
    max_edits: int = setting(4, "at most this many regional edits per critique", min=1, max=16)
    max_new_tokens: int = setting(512, "tokens the critic may write", min=1, max=8192)
    dtype: str = setting("auto", "torch dtype of an in-process critic", choices=DTYPES)
    device: str = setting("auto", "torch device of an in-process critic", check=check_device_name)
    timeout: float = setting(
        120.0, "seconds an endpoint request may take in all (connect, wait and read)", above=0.0, max=3600.0
    )
    max_retries: int = setting(3, "retries on 429/5xx/connection errors, with backoff", min=0, max=20)
    cache_dir: str = setting("", "critique cache folder (keyed by image, prompt, template, model); empty: off")
    park: bool = setting(False, "keep an in-process critic on the CPU while the painter works (smaller GPUs)")


@dataclass(frozen=True)
class BrokenConfig(Section):
    """Thresholds of the broken-image gate (``artaug.judge.broken``). Pixel values are in ``[0, 1]``."""

    name = "judge.broken"

    black_level: float = setting(
        0.08, "near-black if the 99.5th percentile of luminance is below this", min=0.0, max=1.0
    )
    white_level: float = setting(
        0.92, "near-white if the 0.5th percentile of luminance is above this", min=0.0, max=1.0
    )
    flat_std: float = setting(0.02, "near-flat if every colour channel's standard deviation is below this", min=0.0)
    clipped_fraction: float = setting(
        0.6,
        "heavily clipped if more than this fraction of channel values sit on the rails (0 or 255); photographs "
        "rarely exceed 0.2",
        above=0.0,
        max=1.0,
    )
    noise_correlation: float = setting(
        0.2,
        "pure noise if neighbouring pixels' luminance correlates less than this (natural images: above 0.7)",
        min=-1.0,
        max=1.0,
    )

    def check(self) -> list[str]:
        if self.black_level >= self.white_level:
            return [f"black_level {self.black_level} must be below white_level {self.white_level}"]
        return []


@dataclass(frozen=True)
class JudgeConfig(Section):
    """Which scorers run and how much worse a revision may score before it is rolled back (``artaug.judge``)."""

    name = "judge"

    aesthetic: bool = setting(False, "run the LAION aesthetic predictor v2 (needs CLIP ViT-L/14)")
    aesthetic_clip: str = setting(DEFAULT_CLIP, "CLIP for the aesthetic head: hub id or folder", check=_model_spec)
    aesthetic_head: str = setting(
        DEFAULT_AESTHETIC_HEAD, "aesthetic MLP head: a local .safetensors/.pth file or 'owner/repo/file' on the hub"
    )
    aesthetic_epsilon: float = setting(
        0.1, "largest aesthetic drop (1-10 scale) a revision may have and still be accepted", min=0.0, max=10.0
    )
    alignment: bool = setting(False, "run CLIP text-image alignment (CLIPScore x100)")
    alignment_clip: str = setting(DEFAULT_CLIP, "CLIP for alignment: hub id or folder", check=_model_spec)
    alignment_epsilon: float = setting(
        1.0, "largest alignment drop (CLIPScore points, 0-100) a revision may have and be accepted", min=0.0, max=100.0
    )
    world: bool = setting(
        False, "score with the closed world's metric (artaug.world): the share of the prompt's requirements met"
    )
    world_epsilon: float = setting(
        0.0, "largest world-metric drop (0-1) a revision may have and still be accepted", min=0.0, max=1.0
    )
    pairwise: bool = setting(False, "ask the critic VLM which image is better, in both orders (2 calls)")
    pairwise_threshold: float = setting(
        0.5, "accept only if the pairwise preference for the revision is above this (0.5 = a tie)", min=0.0, max=0.99
    )
    pairwise_max_new_tokens: int = setting(8, "tokens the critic may write per pairwise answer", min=1, max=256)
    device: str = setting("auto", "device of the CLIP scorers", check=check_device_name)
    broken: BrokenConfig = setting(BrokenConfig, "broken-image gate thresholds")


@dataclass(frozen=True)
class LoopConfig(Section):
    """The interaction loop: how many rounds, and how a revision is painted."""

    name = "loop"

    rounds: int = setting(2, "critique → repaint → judge rounds after the first painting", min=0, max=20)
    regional: str = setting(
        "attention",
        "how edits are painted: attention (one transformer pass per step) or blend (ArtAug's formula, 1+N passes)",
        choices=REGIONAL_MODES,
    )
    strength: float = setting(
        0.8,  # the closed world (README): 0.4 keeps the layout an edit must change; at 1.0 the rest of it drifts
        "fraction of the schedule a revision re-runs from the current best painting; 1.0 (as published ArtAug) "
        "re-denoises from the seed's noise; lower is cheaper and keeps more of the picture, too low keeps the layout "
        "an edit needs to change",
        above=0.0,
        max=1.0,
    )
    edit_weight: float = setting(
        10.0, "s_i: how strongly each edit's local prompt counts in its box (blend: its prediction's weight in the "
        "partition formula; attention: the factor on the attention its box pays its text)",
        above=0.0, max=1000.0,
    )  # fmt: skip
    blur_sigma: float = setting(
        0.0, "Gaussian blur of blend masks, in tokens of 16 px; 0 = hard masks", min=0.0, max=64.0
    )
    region_max_sequence_length: int = setting(
        64, "most T5 tokens per local prompt; each is encoded at its own length up to this", min=1, max=512
    )
    use_global_prompt: bool = setting(True, "repaint with the critic's rewritten global prompt when it gives one")
    max_rerolls: int = setting(
        3, "a broken first painting is re-rolled with the next seed at most this often", min=0, max=10
    )
    fix: str = setting(
        "regional", "how a round fixes what the critic asked for: regional (repaint the boxes), edit (one instruction "
        "to painter.editor, composited back outside the boxes) or auto (chosen per round by the edits' kind)",
        choices=FIXES,
    )  # fmt: skip
    edit_seam: int = setting(
        16, "pixels over which an instruction edit fades into the untouched painting outside the boxes", min=0, max=512
    )
    auto_edit_area: float = setting(
        0.35, "fix = auto: a round whose largest box covers more of the image than this is repainted regionally",
        above=0.0, max=1.0,
    )  # fmt: skip


@dataclass(frozen=True)
class FilterConfig(Section):
    """Which checks a synthesized pair must pass, and their thresholds; ``none`` turns a threshold off."""

    name = "synth.filters"

    revised: bool = setting(True, "drop pairs whose loop accepted no revision (after == before)")
    broken_gate: bool = setting(True, "both images must pass the broken-image gate")
    min_aesthetic_gain: float | None = setting(
        0.0, "after's aesthetic score minus before's must be >= this (1-10 scale)", min=-10.0, max=10.0
    )
    max_alignment_drop: float | None = setting(
        1.0, "before's alignment minus after's must be <= this (CLIPScore 0-100)", min=-100.0, max=100.0
    )
    min_similarity: float | None = setting(
        0.5, "same scene: image-image similarity must be >= this", min=-1.0, max=1.0
    )
    similarity: str = setting(
        "ssim", "ssim or pixels (model-free), or clip (image-embedding cosine; needs clip_model)", choices=SIMILARITIES
    )
    clip_model: str = setting("", "CLIP hub id or folder for similarity = clip")
    aesthetic_score: str = setting("aesthetic", "the judge's score name used for the aesthetic gain")
    alignment_score: str = setting("alignment", "the judge's score name used for the alignment drop")
    keep_not_scored: bool = setting(False, "keep pairs whose filters could not be scored")

    def check(self) -> list[str]:
        if self.similarity == "clip" and not self.clip_model:
            return ["similarity = clip needs clip_model (a CLIP hub id or local folder)"]
        return []


@dataclass(frozen=True)
class SynthConfig(Section):
    """Pair synthesis: which pairs a prompt's run yields and how long a worker's claim lasts."""

    name = "synth"

    all_rounds: bool = setting(False, "one pair per accepted round (previous best → this round), not (first, final)")
    lease_ttl: float = setting(
        600.0, "seconds a worker's claim on a prompt lasts without renewal", min=1.0, max=86400.0
    )
    filters: FilterConfig = setting(FilterConfig, "the pair filters")


@dataclass(frozen=True)
class TrainConfig(Section):
    """How to train one (differential) LoRA. Defaults follow common FLUX.1-dev LoRA recipes for a 24-80 GB GPU."""

    name = "train"

    mode: Literal["differential", "plain"] = setting(
        "differential",
        "differential: LoRA-1 on the before images is fused, LoRA-2 on the after images is kept; plain: one LoRA on "
        "the after images",
        choices=("differential", "plain"),
    )
    resolution: int = setting(
        1024, "training images are resized and center-cropped to this square size in pixels", min=16, max=4096,
        check=_multiple_of_16,
    )  # fmt: skip
    buckets: bool = setting(
        False, "aspect-ratio buckets: each image keeps its shape at about resolution² pixels; a batch holds one bucket"
    )
    rank: int = setting(16, "LoRA rank r", min=1, max=1024)
    alpha: float = setting(16.0, "LoRA alpha; the update is scaled by alpha / rank", above=0.0, max=1e6)
    target_modules: tuple[str, ...] = setting(
        list(dict.fromkeys(FLUX_TARGET_MODULES + QWEN_IMAGE_TARGET_MODULES)),
        "module name suffixes adapted inside the transformer blocks (FLUX.1's and Qwen-Image's; names a painter "
        "lacks are skipped)",
    )
    learning_rate: float = setting(1e-4, "AdamW learning rate", above=0.0, max=1.0)
    lr_warmup_steps: int = setting(0, "linear warm-up steps before the constant learning rate", min=0, max=1_000_000)
    weight_decay: float = setting(1e-4, "AdamW weight decay on the LoRA parameters", min=0.0, max=10.0)
    max_grad_norm: float = setting(1.0, "gradient clipping norm; 0 disables clipping", min=0.0, max=1e6)
    steps: int = setting(
        1000, "optimizer steps per stage (differential mode trains two stages)", min=1, max=10_000_000
    )
    batch_size: int = setting(1, "examples per micro-batch, per process", min=1, max=4096)
    gradient_accumulation_steps: int = setting(1, "micro-batches per optimizer step", min=1, max=4096)
    mixed_precision: Literal["no", "bf16", "fp16"] = setting(
        "bf16", "frozen base weights and autocast in this precision; LoRA parameters and optimizer stay float32",
        choices=("no", "bf16", "fp16"),
    )  # fmt: skip
    gradient_checkpointing: bool = setting(False, "recompute block activations in the backward pass to save memory")
    optimizer: Literal["adamw", "adamw8bit"] = setting(
        "adamw", "adamw (torch) or adamw8bit (bitsandbytes: the train8bit extra)", choices=("adamw", "adamw8bit")
    )
    timestep_sampling: Literal["shifted", "logit_normal"] = setting(
        "shifted",
        "shifted: sigma uniform on a shifted 1000-step table, loss weighted around mid-schedule (DiffSynth-Studio's "
        "FLUX recipe); logit_normal: sigma = shift(sigmoid(N(mean, std))), unweighted (SD3 paper)",
        choices=("shifted", "logit_normal"),
    )
    shift: float = setting(3.0, "sigma shift s: sigma' = s*sigma / (1 + (s-1)*sigma)", above=0.0, max=100.0)
    logit_mean: float = setting(0.0, "mean of the logit-normal timestep density", min=-10.0, max=10.0)
    logit_std: float = setting(1.0, "standard deviation of the logit-normal timestep density", above=0.0, max=10.0)
    guidance: float = setting(
        1.0, "FLUX guidance-embedding value during training (1.0 = no guidance)", min=0.0, max=100.0
    )
    max_sequence_length: int = setting(512, "T5 tokens per caption", min=1, max=512)
    seed: int = setting(
        0, "seed of the LoRA initialisation and of every random draw of training", min=0, max=2**63 - 1
    )
    checkpoint_every: int = setting(250, "save a resumable checkpoint every N steps (0: only at the end)", min=0)
    keep_checkpoints: int = setting(2, "how many of the newest checkpoints to keep per stage", min=1, max=1000)
    iteration: int = setting(0, "bootstrap iteration this LoRA belongs to (provenance only)", min=0)
    progress: bool = setting(True, "show a progress bar with the loss")

    def check(self) -> list[str]:
        return [] if self.target_modules else ["target_modules must not be empty"]


@dataclass(frozen=True)
class BootstrapConfig(Section):
    """The self-improvement cycle: how many iterations, and what "better" means on the held-out prompts."""

    name = "bootstrap"

    iterations: int = setting(3, "most synth → train → score iterations to run", min=1, max=100)
    score: str = setting(
        "aesthetic", "the eval metric that decides: its paired difference on the held-out prompts must rise"
    )
    min_improvement: float = setting(
        0.0, "an iteration is kept only if the low end of that difference's interval is above this"
    )


# The metrics ``artaug eval`` knows (``artaug.eval.registry`` holds their loading code; a test keeps the two equal).
EVAL_METRICS = ("pickscore", "clipscore", "aesthetic", "vqascore", "world", "geneval")
DEFAULT_PICKSCORE = "yuvalkirstain/PickScore_v1"
DEFAULT_PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
# VQAScore's question (Lin et al. 2024, "Evaluating Text-to-Visual Generation with Image-to-Text Generation").
DEFAULT_VQA_QUESTION = 'Does this figure show "{prompt}"? Please answer yes or no.'


def _metric_names(value: tuple[str, ...]) -> str | None:
    unknown = [name for name in value if name not in EVAL_METRICS]
    if unknown or not value:
        return f"must name one or more of {', '.join(EVAL_METRICS)}; got {', '.join(unknown) or 'none'}"
    return None if len(set(value)) == len(value) else "names a metric twice"


def _question(value: str) -> str | None:
    return None if "{prompt}" in value else "must contain {prompt}, where the painting's prompt goes"


@dataclass(frozen=True)
class EvalConfig(Section):
    """``artaug eval``: which metrics score the paintings, how many seeds per prompt, and the statistics."""

    name = "eval"

    metrics: tuple[str, ...] = setting(
        ("clipscore", "aesthetic"), f"metrics to compute, comma-separated: {', '.join(EVAL_METRICS)}",
        check=_metric_names,
    )  # fmt: skip
    seeds: int = setting(1, "paintings per prompt and condition: the prompt's seed s, then s+1, ...", min=1, max=64)
    loop: bool = setting(False, "add the critique-loop conditions (+ loop, and + LoRA + loop), loop.rounds rounds")
    resamples: int = setting(2000, "bootstrap resamples of the prompts behind every interval", min=10, max=1_000_000)
    confidence: float = setting(0.95, "coverage of the bootstrap intervals", above=0.5, max=0.999)
    bootstrap_seed: int = setting(0, "seed of the resampling, so an interval is the same on every run", min=0)
    epsilon: float = setting(
        0.0, "bootstrap gate: every other metric's paired difference must have its interval's low end >= -epsilon "
        "(in that metric's own units)", min=0.0, max=1e6,
    )  # fmt: skip
    batch_size: int = setting(8, "images per metric call", min=1, max=1024)
    device: str = setting("auto", "device of the metric models", check=check_device_name)
    clip_model: str = setting(DEFAULT_CLIP, "CLIP for clipscore: hub id or folder", check=_model_spec)
    aesthetic_clip: str = setting(DEFAULT_CLIP, "CLIP for the aesthetic head: hub id or folder", check=_model_spec)
    aesthetic_head: str = setting(
        DEFAULT_AESTHETIC_HEAD, "aesthetic MLP head: a local .safetensors/.pth file or 'owner/repo/file' on the hub"
    )
    pickscore_model: str = setting(DEFAULT_PICKSCORE, "PickScore CLIPModel: hub id or folder", check=_model_spec)
    pickscore_processor: str = setting(
        DEFAULT_PICKSCORE_PROCESSOR, "processor PickScore was trained with: hub id or folder", check=_model_spec
    )
    vqa_model: str = setting(
        DEFAULT_CRITIC, "VLM for vqascore: a Qwen-family hub id or folder, or an OpenAI-compatible base URL",
        check=_model_spec,
    )  # fmt: skip
    vqa_served_model: str = setting("", "model name to request from a vqascore URL (default: the server's first)")
    vqa_question: str = setting(DEFAULT_VQA_QUESTION, "the vqascore question; {prompt} is the prompt", check=_question)
    world_partial: bool = setting(False, "world metric: the share of requirements met instead of all-or-nothing")
    geneval_detections: str = setting(
        "", "GenEval: the detections JSONL the external detector job wrote (see docs/eval.md)"
    )
    report_prompts: int = setting(48, "prompts shown in report.html's image grid", min=0, max=10_000)
    thumbnail: int = setting(192, "longest side of the images embedded in report.html, in pixels", min=16, max=1024)
    progress: bool = setting(True, "show progress bars with ETA")


def _host(value: str) -> str | None:
    ok = re.fullmatch(r"[A-Za-z0-9.:\[\]-]{1,253}", value)
    return None if ok else f"must be a host name or IP address to listen on, got {value!r}"


@dataclass(frozen=True)
class StudioConfig(Section):
    """``artaug studio``: where it listens, where it writes, and what a browser may send it."""

    name = "studio"

    host: str = setting(
        "127.0.0.1", "address to listen on; any other than loopback needs --auth (or the auth_env variable)",
        check=_host,
    )  # fmt: skip
    port: int = setting(7860, "port to listen on (0: any free port)", min=0, max=65535)
    output: str = setting("runs/studio", "folder of the studio's run folders (one per painting session)")
    store: str = setting("runs/studio/pairs", "synth store whose pairs are reviewed and which accepted revisions join")
    person: str = setting(
        "person", "name recorded as the critic of rounds a person edited and as the reviewer of their verdicts",
        check=lambda v: None if v.strip() and len(v) <= 200 else "must be a name of 1 to 200 characters",
    )  # fmt: skip
    use_critic: bool = setting(True, "load the critic at start; off: the person is the only client")
    auth_env: str = setting(
        "ARTAUG_STUDIO_AUTH", "environment variable holding USER:PASSWORD for the login page", check=_env_name
    )
    max_upload_mb: float = setting(20.0, "largest file a browser may upload, in MB", above=0.0, max=1024.0)
    max_queue: int = setting(16, "jobs that may wait for the painter at once; more are refused", min=1, max=1000)


SECTIONS: dict[str, type[Section]] = {
    "painter": PainterConfig,
    "critic": CriticConfig,
    "judge": JudgeConfig,
    "loop": LoopConfig,
    "synth": SynthConfig,
    "train": TrainConfig,
    "bootstrap": BootstrapConfig,
    "studio": StudioConfig,
    "eval": EvalConfig,
}
# What a painting depends on: the sections dumped beside a run's images.
PAINT_SECTIONS = ("painter", "critic", "judge", "loop")


@dataclass(frozen=True)
class Config(Section):
    """Every section. ``load_config`` builds one; ``config.updated({"loop.rounds": 3})`` a validated variant."""

    name = "config"

    painter: PainterConfig = setting(PainterConfig, "the painter")
    critic: CriticConfig = setting(CriticConfig, "the critic")
    judge: JudgeConfig = setting(JudgeConfig, "the judge")
    loop: LoopConfig = setting(LoopConfig, "the interaction loop")
    synth: SynthConfig = setting(SynthConfig, "pair synthesis")
    train: TrainConfig = setting(TrainConfig, "LoRA training")
    bootstrap: BootstrapConfig = setting(BootstrapConfig, "the bootstrap cycle")
    studio: StudioConfig = setting(StudioConfig, "the studio web app")
    eval: EvalConfig = setting(EvalConfig, "evaluation")

    def check(self) -> list[str]:
        if self.loop.fix != "regional" and not self.painter.editor:
            return [f"loop.fix = {self.loop.fix} needs painter.editor (an instruction-editing model such as "
                    "black-forest-labs/FLUX.1-Kontext-dev)"]  # fmt: skip
        return []

    @classmethod
    def from_dict(cls, data: Any, where: str | None = None) -> Config:
        if isinstance(data, dict) and (unknown := sorted(set(data) - set(SECTIONS))):
            raise ConfigError(f"unknown config section [{unknown[0]}]; sections: {', '.join(SECTIONS)}")
        return super().from_dict(data, "config")

    def updated(self, overrides: dict[str, Any]) -> Config:
        """A validated copy with ``{"section.key": value}`` overrides (values typed, or strings as on a CLI)."""
        data = self.to_dict()
        preset = _memory_preset(overrides.get("painter.memory"))  # a preset chosen now fills in its settings
        for dotted, value in {**preset, **overrides}.items():
            _put(data, dotted, value)
        return Config.from_dict(data)

    def to_dict(self, nested: bool = True, sections: tuple[str, ...] | None = None) -> dict[str, Any]:
        data = super().to_dict(nested)
        return data if sections is None else {k: v for k, v in data.items() if k in sections}

    def dump(self, path: str | Path, sections: tuple[str, ...] | None = None) -> Path:
        """Write the resolved config (or only ``sections``) as TOML, atomically."""
        return write_toml(path, self.to_dict(sections=sections))


def load_config(
    path: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
    presets: dict[str, Any] | None = None,
) -> Config:
    """Defaults, then ``presets`` (``--tiny``), then the TOML file at ``path``, then ``overrides``
    (``{"loop.rounds": 3, ...}``, typed values or CLI strings); validated once, at the end."""
    data: dict[str, Any] = {}
    for dotted, value in (presets or {}).items():
        _put(data, dotted, value)
    if path is not None:
        _merge(data, read_toml(path))
    for dotted, value in (overrides or {}).items():
        _put(data, dotted, value)
    _expand_memory_preset(data)
    return Config.from_dict(data)


def _memory_preset(name: Any) -> dict[str, Any]:
    # An unknown name (or not a name at all) expands to nothing: validation then says what is wrong with it.
    return MEMORY_PRESETS.get(name, {}) if isinstance(name, str) else {}


def _expand_memory_preset(data: dict[str, Any]) -> None:
    """Fill in the settings of ``painter.memory``'s preset that were not given explicitly."""
    name = data.get("painter", {}).get("memory") if isinstance(data.get("painter"), dict) else None
    for dotted, value in _memory_preset(name).items():
        section, key = dotted.split(".")
        table = data.setdefault(section, {})
        if isinstance(table, dict):
            table.setdefault(key, value)


def _merge(data: dict[str, Any], table: dict[str, Any]) -> None:
    for key, value in table.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            _merge(data[key], value)
        else:
            data[key] = value


def parse_set_options(items: list[str]) -> dict[str, str]:
    """``{"loop.rounds": "3", ...}`` from repeated ``--set section.key=value`` flags."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. --set loop.rounds=3")
        out[key.strip()] = value.strip()
    return out


def _put(data: dict[str, Any], dotted: str, value: Any) -> None:
    section, _, rest = dotted.partition(".")
    if section not in SECTIONS or not rest:
        raise ConfigError(f"setting {dotted!r} must look like section.key with section one of {', '.join(SECTIONS)}")
    table = data.setdefault(section, {})
    *parents, key = rest.split(".")
    for part in parents:  # judge.broken.black_level, synth.filters.min_similarity
        table = table.setdefault(part, {})
        if not isinstance(table, dict):
            raise ConfigError(f"setting {dotted!r}: {part} is not a table")
    table[key] = value


def setting_names() -> list[str]:
    """Every ``section.key`` there is (nested ones as ``section.sub.key``)."""
    return [name for name, _, _ in Config.settings()]


def describe(dotted: str) -> tuple[Any, Any]:
    """``(field, type hint)`` of a ``section.key`` name: its help, default and rules; ``ConfigError`` if unknown."""
    for name, f, hint in Config.settings():
        if name == dotted:
            return f, hint
    raise ConfigError(f"unknown setting {dotted!r}")


def option_names(settings: tuple[str, ...]) -> dict[str, str]:
    """Short names of ``settings`` (``{"painter": "painter.model", "steps": "painter.num_inference_steps", ...}``):
    each field's ``flag`` (else its own name) and its aliases. The CLI's flags and ``artaug.paint``'s keywords are
    both these names, so they cannot drift apart."""
    names: dict[str, str] = {}
    for dotted in settings:
        f, _ = describe(dotted)
        for name in (f.metadata.get("flag") or dotted.rsplit(".", 1)[-1], *f.metadata.get("aliases", ())):
            if names.setdefault(name, dotted) != dotted:
                raise ValueError(f"option name {name!r} would set both {names[name]} and {dotted}")
    return names


__all__ = [
    "DEFAULT_AESTHETIC_HEAD",
    "DEFAULT_CLIP",
    "DEFAULT_CRITIC",
    "DEFAULT_PAINTER",
    "FLUX_TARGET_MODULES",
    "QWEN_IMAGE_TARGET_MODULES",
    "BootstrapConfig",
    "BrokenConfig",
    "Config",
    "ConfigError",
    "CriticConfig",
    "EvalConfig",
    "FilterConfig",
    "JudgeConfig",
    "LoopConfig",
    "PainterConfig",
    "StudioConfig",
    "SynthConfig",
    "TrainConfig",
    "load_config",
    "parse_set_options",
]
