"""Build the world painter: a FLUX-layout diffusers folder trained here, on this CPU, from rendered scenes.

    python -m artaug.world.build OUT_DIR --seed 0

1. World tokenizers: one token per grammar word (CLIP BPE trained on the training prompts; a T5 Unigram vocabulary of
   the grammar's words, characters as fallback), and the tiny CLIP/T5 encoders of ``artaug.tiny`` over them, random
   and frozen (deterministic, so the transformer can learn to read them).
2. Training scenes: prompts of the *train* split only, drawn by ``CATEGORY_MIX``: mostly single objects, fewer
   compositions, so the painter is good at objects and imperfect at putting several together.
3. VAE: FLUX's ``AutoencoderKL`` layout (8x downsampling, 16 latent channels) trained by reconstruction; its
   ``shift_factor`` / ``scaling_factor`` are the latents' mean and 1 / std, as FLUX's were chosen.
4. Latents and text embeddings cached once (encoding dominates a step otherwise).
5. Transformer: ``FluxTransformer2DModel`` (2 double + 3 single blocks, 4 heads x 32) by flow matching, with
   caption dropout and region-conditioned batches, then guidance distillation (see ``artaug.world.train``).
6. Save (transformer and VAE in float16) with ``FluxPipeline.save_pretrained`` and write ``BUILD.json``: the
   command, wall time, threads, and a hash of every file.

Deterministic from ``--seed`` for a given thread count (float reductions may differ across thread counts).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, FluxPipeline, FluxTransformer2DModel
from transformers import CLIPTokenizer, T5EncoderModel, T5Tokenizer

from artaug.tiny.painter import tiny_clip, tiny_scheduler, tiny_t5
from artaug.tiny.tokenizers import train_clip_tokenizer
from artaug.train.data import pack_latents
from artaug.world import MODEL_DIR
from artaug.world.grammar import CATEGORIES, EMPTY_PROMPT, PLACES, ObjectSpec, parse_prompt, split_prompts
from artaug.world.scenes import SIZE, Scene, cell_box, layout, render
from artaug.world.train import (
    DistillSchedule,
    RegionExamples,
    TrainingData,
    TransformerSchedule,
    VaeSchedule,
    distill_guidance,
    to_unit,
    train_transformer,
    train_vae,
)

# The painter's diet: single objects dominate, compositions are under-represented (see module docstring).
CATEGORY_MIX = {
    "single_object": 0.12,
    "colors": 0.46,
    "two_object": 0.08,
    "color_attr": 0.12,
    "position": 0.07,
    "counting": 0.12,
    "empty": 0.03,
}
MAX_SEQUENCE_LENGTH = 16  # T5 tokens: the longest world prompt is 15 words + </s> (a test keeps it so)
T5_BRANCH_SCALE = 0.25


@dataclass(frozen=True)
class BuildConfig:
    """Everything that determines the built painter."""

    seed: int = 0
    scenes: int = 12000  # training scenes for the transformer (the VAE trains on the first ``vae_scenes``)
    vae_scenes: int = 4000
    vae: VaeSchedule = field(default_factory=VaeSchedule)
    transformer: TransformerSchedule = field(default_factory=TransformerSchedule)
    distill: DistillSchedule = field(default_factory=DistillSchedule)
    threads: int = 2


# ---------------------------------------------------------------------------------------------------- components


def world_words() -> list[str]:
    """Every word of the world grammar, sorted."""
    return sorted(
        {w for c in CATEGORIES for p in split_prompts(c, "train") for w in p.split()} | set(EMPTY_PROMPT.split())
    )


def world_t5_tokenizer() -> T5Tokenizer:
    """A Unigram T5 tokenizer whose pieces are the grammar's words (``▁red``); single characters, scored far lower,
    keep any other text encodable, as ``<unk>``-free as the real one."""
    words = world_words()
    characters = sorted({c for w in words for c in w})
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *((f"▁{w}", -1.0) for w in words), ("▁", -5.0)]
    vocab += [(c, -10.0) for c in characters]
    return T5Tokenizer(vocab=vocab, model_max_length=512)


def world_clip_tokenizer() -> CLIPTokenizer:
    """CLIP byte-level BPE trained on the training prompts (every grammar word ends as one token)."""
    texts = [p for c in CATEGORIES for p in split_prompts(c, "train")] + [EMPTY_PROMPT] * 8
    return train_clip_tokenizer(vocab_size=1024, texts=texts)


def world_t5(vocab_size: int) -> T5EncoderModel:
    """The tiny random T5 with its residual branches (attention output, feed-forward output) scaled by
    ``T5_BRANCH_SCALE``: at full scale a random encoder mixes every token into every other (a colour word's output is
    0.75-cosine-similar to another colour's in the same sentence), at 0.25 each output is mostly its own word
    (cosine ~0.05) plus some context, which is what lets a small transformer learn to read it."""
    model = tiny_t5(vocab_size)
    with torch.no_grad():
        for block in model.encoder.block:
            block.layer[0].SelfAttention.o.weight.mul_(T5_BRANCH_SCALE)
            block.layer[1].DenseReluDense.wo.weight.mul_(T5_BRANCH_SCALE)
    return model


def world_vae() -> AutoencoderKL:
    """FLUX's VAE layout at width (16, 32, 32, 32): 8x downsampling, 16 latent channels, no quant convs."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 32, 32),
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=8,
        sample_size=SIZE,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def world_transformer(text_dim: int) -> FluxTransformer2DModel:
    """2 double-stream + 3 single-stream blocks, 4 heads of 32 (RoPE axes 8 + 12 + 12), guidance embedding."""
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=2,
        num_single_layers=3,
        attention_head_dim=32,
        num_attention_heads=4,
        joint_attention_dim=text_dim,
        pooled_projection_dim=text_dim,
        guidance_embeds=True,
        axes_dims_rope=(8, 12, 12),
    )


# ---------------------------------------------------------------------------------------------------- data


def training_prompts(count: int, rng: random.Random) -> list[str]:
    """``count`` prompts of the train split, categories drawn by ``CATEGORY_MIX``."""
    categories, weights = zip(*CATEGORY_MIX.items(), strict=True)
    out = []
    for category in rng.choices(categories, weights, k=count):
        out.append(EMPTY_PROMPT if category == "empty" else rng.choice(split_prompts(category, "train")))
    return out


def training_scenes(prompts: list[str], seed: int) -> list[Scene]:
    """One scene per prompt; scene ``i`` is laid out from the seed ``"seed:i"``."""
    return [layout(parse_prompt(prompt), random.Random(f"{seed}:{i}")) for i, prompt in enumerate(prompts)]


def render_scenes(scenes: list[Scene]) -> torch.Tensor:
    """The scenes rendered, as (N, 3, 128, 128) uint8."""
    out = torch.empty(len(scenes), 3, SIZE, SIZE, dtype=torch.uint8)
    for i, scene in enumerate(scenes):
        out[i] = torch.from_numpy(np.array(render(scene))).permute(2, 0, 1)
    return out


def region_of(scene: Scene, rng: random.Random) -> tuple[str, str]:
    """A local prompt and the cell it covers, as the world critic writes them: one of the scene's objects in its
    cell (its colour named 70% of the time), or, one time in five and always on an empty canvas, a free cell as
    "a plain background"."""
    free = [p for p in PLACES if p not in {s.place for s in scene.shapes}]
    if scene.shapes and (not free or rng.random() < 0.8):
        shape = rng.choice(scene.shapes)
        colour = shape.colour if rng.random() < 0.7 else None
        return ObjectSpec(shape.shape, colour, shape.place).phrase(), shape.place
    return EMPTY_PROMPT, rng.choice(free)


def cell_tokens(place: str) -> torch.Tensor:
    """(S,) bool: the packed image tokens (16 x 16 px each, row-major) a grid cell touches."""
    x0, y0, x1, y1 = cell_box(place)
    side = SIZE // 16
    edges = torch.arange(side) * 16
    rows = (edges + 16 > y0) & (edges < y1)
    cols = (edges + 16 > x0) & (edges < x1)
    return (rows[:, None] & cols[None, :]).flatten()


@torch.no_grad()
def encode_latents(vae: AutoencoderKL, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Posterior means of the VAE for uint8 ``images``, unscaled, (N, 16, H/8, W/8), float32 (computed in bfloat16:
    twice as fast on the CPU, and a cache only needs to be deterministic)."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        chunks = [vae.encode(to_unit(images[i : i + batch])).latent_dist.mode() for i in range(0, len(images), batch)]
    return torch.cat(chunks).float()


@torch.no_grad()
def encode_texts(pipe: FluxPipeline, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """T5 embeddings (N, L, D) and CLIP pooled embeddings (N, P) per prompt, each distinct prompt encoded once."""
    distinct = sorted(set(prompts))
    embeds, pooled, _ = pipe.encode_prompt(prompt=distinct, prompt_2=None, max_sequence_length=MAX_SEQUENCE_LENGTH)
    index = torch.tensor([distinct.index(p) for p in prompts])
    return embeds[index], pooled[index]


# ---------------------------------------------------------------------------------------------------- the build


def build_world_painter(
    out_dir: str | Path, config: BuildConfig = BuildConfig(), log=print, command: str | None = None
) -> Path:
    """Train the world painter and save it to ``out_dir`` (see the module docstring for the steps); ``command`` is
    recorded in ``BUILD.json`` as the way to rebuild it."""
    started = time.perf_counter()
    phases: dict[str, float] = {}
    torch.set_num_threads(config.threads)
    out_dir = Path(out_dir)
    generator = torch.Generator().manual_seed(config.seed)
    rng = random.Random(config.seed)

    # 1. Tokenizers and frozen text encoders
    tokenizer, tokenizer_2 = world_clip_tokenizer(), world_t5_tokenizer()
    text_encoder = tiny_clip(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    text_encoder_2 = world_t5(len(tokenizer_2))

    # 2. Training scenes
    prompts = training_prompts(config.scenes, rng)
    scenes = training_scenes(prompts, config.seed)
    images = render_scenes(scenes)
    phases["scenes"] = time.perf_counter() - started
    log(f"rendered {len(images)} scenes ({phases['scenes']:.0f} s)")

    # 3. VAE
    torch.manual_seed(config.seed)
    vae = world_vae()
    train_vae(vae, images[: config.vae_scenes], config.vae, generator, log)
    phases["vae"] = time.perf_counter() - started
    raw = encode_latents(vae, images)
    vae.register_to_config(shift_factor=float(raw.mean()), scaling_factor=float(1 / raw.std()))

    # 4. Cached latents and text embeddings
    torch.manual_seed(config.seed + 1)
    pipe = FluxPipeline(
        scheduler=tiny_scheduler(),
        vae=vae,
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2.eval(),
        tokenizer_2=tokenizer_2,
        transformer=world_transformer(text_encoder_2.config.d_model),
    )
    latents = pack_latents((raw - vae.config.shift_factor) * vae.config.scaling_factor)
    embeds, pooled = encode_texts(pipe, prompts)
    empty = encode_texts(pipe, [""])
    local = [region_of(scene, rng) for scene in scenes]
    regions = RegionExamples(
        encode_texts(pipe, [p for p, _ in local])[0], torch.stack([cell_tokens(c) for _, c in local])
    )
    phases["cache"] = time.perf_counter() - started
    log(f"cached latents {tuple(latents.shape)} and embeddings ({phases['cache']:.0f} s)")

    # 5. Transformer
    data = TrainingData(latents, embeds, pooled, regions, empty)
    pipe.transformer = train_transformer(pipe.transformer, data, config.transformer, generator, log)
    if config.distill.steps:
        pipe.transformer = distill_guidance(pipe.transformer, data, config.transformer, config.distill, generator, log)

    phases["transformer"] = time.perf_counter() - started

    # 6. Save (the two trained models in float16: half the bytes, and they load as float32), with the record of how
    pipe.transformer.to(torch.float16)
    pipe.vae.to(torch.float16)
    pipe.save_pretrained(out_dir)
    record = {
        "command": command,
        "config": asdict(config),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "seconds_at_end_of": {name: round(seconds, 1) for name, seconds in phases.items()},
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "files": folder_digests(out_dir),
    }
    (out_dir / "BUILD.json").write_text(json.dumps(record, indent=2) + "\n")
    log(f"built {out_dir} in {record['wall_seconds']} s")
    return out_dir


def folder_digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (``BUILD.json`` excluded), by relative path, plus ``"*"``: the hash of
    the sorted ``path digest`` lines, one hash for the whole folder."""
    digests = {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "BUILD.json"
    }
    digests["*"] = hashlib.sha256("".join(f"{k} {v}\n" for k, v in digests.items()).encode()).hexdigest()
    return digests


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m artaug.world.build", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", nargs="?", default=str(MODEL_DIR), help="where to write the painter folder")
    parser.add_argument("--seed", type=int, default=BuildConfig.seed)
    parser.add_argument("--threads", type=int, default=BuildConfig.threads, help="torch threads")
    parser.add_argument("--scenes", type=int, default=BuildConfig.scenes)
    parser.add_argument("--vae-steps", type=int, default=VaeSchedule.steps)
    parser.add_argument("--transformer-steps", type=int, default=TransformerSchedule.steps)
    parser.add_argument("--region-every", type=int, default=TransformerSchedule.region_every)
    parser.add_argument("--distill-steps", type=int, default=DistillSchedule.steps)
    args = parser.parse_args(argv)
    config = BuildConfig(
        seed=args.seed,
        scenes=args.scenes,
        threads=args.threads,
        vae=VaeSchedule(steps=args.vae_steps),
        transformer=TransformerSchedule(steps=args.transformer_steps, region_every=args.region_every),
        distill=DistillSchedule(steps=args.distill_steps),
    )
    build_world_painter(
        args.out_dir, config, command=" ".join(["python -m artaug.world.build", *(argv or sys.argv[1:])])
    )


if __name__ == "__main__":
    main()
