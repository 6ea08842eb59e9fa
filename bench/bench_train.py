"""Training speed and peak memory: artaug's LoRA trainer vs diffusers' own FLUX LoRA recipe, same configuration.

The baseline re-implements the core loop of diffusers' ``examples/dreambooth/train_dreambooth_lora_flux.py``
(the recipe's defaults: the VAE encodes the batch every step unless ``--cache_latents``; prompt embeddings computed
once; sigmas looked up in the ``FlowMatchEulerDiscreteScheduler`` table; pack, predict, unpack; weighted MSE against
``noise - x0``; AdamW on float32 LoRA parameters, gradient clipping). Both sides adapt the same layers at the same
rank, precision, resolution and batch size, on the same random-weight models. Each variant runs in its own process,
so its peak resident memory (CPU) or peak allocated memory (CUDA) is its own.

    python bench/bench_train.py                 # small CPU configuration, ~5 minutes on 2 cores
    python bench/bench_train.py --full          # FLUX.1-dev geometry (12B transformer), random weights, one GPU

Not a test: it prints a table; the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch

SMALL = dict(
    transformer=dict(num_layers=2, num_single_layers=4, attention_head_dim=32, num_attention_heads=4,
                     joint_attention_dim=64, pooled_projection_dim=32, axes_dims_rope=(8, 12, 12)),
    vae=dict(block_out_channels=(16, 32, 32, 32), layers_per_block=1, norm_num_groups=8),
    resolution=128, text_length=64, rank=16, precision="no", checkpointing=False, warmup=2, steps=10,
)  # fmt: skip
FULL = dict(
    transformer=dict(num_layers=19, num_single_layers=38, attention_head_dim=128, num_attention_heads=24,
                     joint_attention_dim=4096, pooled_projection_dim=768, axes_dims_rope=(16, 56, 56)),
    vae=dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32),
    resolution=1024, text_length=512, rank=16, precision="bf16", checkpointing=True, warmup=3, steps=10,
)  # fmt: skip


def build_models(geometry: dict, device: torch.device, dtype: torch.dtype):
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build in the training dtype directly: 12B float32 weights would not fit
    with device:
        transformer = FluxTransformer2DModel(
            patch_size=1, in_channels=64, guidance_embeds=True, **geometry["transformer"]
        )
        blocks = len(geometry["vae"]["block_out_channels"])
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * blocks,
            up_block_types=("UpDecoderBlock2D",) * blocks,
            latent_channels=16,
            use_quant_conv=False,
            use_post_quant_conv=False,
            scaling_factor=0.3611,
            shift_factor=0.1159,
            **geometry["vae"],
        )
    torch.set_default_dtype(previous)
    return transformer, vae


def inputs(geometry: dict, device: torch.device):
    g = torch.Generator().manual_seed(1)
    res, cfg = geometry["resolution"], geometry["transformer"]
    pixels = torch.rand(1, 3, res, res, generator=g) * 2 - 1
    embeds = torch.randn(1, geometry["text_length"], cfg["joint_attention_dim"], generator=g)
    pooled = torch.randn(1, cfg["pooled_projection_dim"], generator=g)
    return pixels.to(device), embeds.to(device), pooled.to(device)


def run_artaug(geometry: dict, device: torch.device, dtype: torch.dtype) -> dict:
    from artaug.config import TrainConfig
    from artaug.train.data import CachedData, pack_latents
    from artaug.train.trainer import train_stage

    transformer, vae = build_models(geometry, device, dtype)
    pixels, embeds, pooled = inputs(geometry, device)
    # artaug caches latents once (the posterior mean) and frees the VAE before training.
    with torch.no_grad():
        latents = vae.encode(pixels.to(dtype)).latent_dist.mode()
    latents = pack_latents(((latents - 0.1159) * 0.3611).float().cpu())
    del vae
    size = geometry["resolution"] // 8
    data = CachedData(list(latents), embeds.float().cpu(), pooled.float().cpu(), [(size, size)])
    config = TrainConfig(
        resolution=geometry["resolution"],
        rank=geometry["rank"],
        alpha=geometry["rank"],
        steps=geometry["warmup"] + geometry["steps"],
        mixed_precision=geometry["precision"],
        gradient_checkpointing=geometry["checkpointing"],
        checkpoint_every=0,
        progress=False,
        max_sequence_length=geometry["text_length"],
    )
    before = torch.cuda.max_memory_allocated() if device.type == "cuda" else 0
    with tempfile.TemporaryDirectory() as folder:
        result = train_stage(transformer, data, config, folder)
    out = {"step_seconds": result.step_seconds[geometry["warmup"] :], "loss": result.losses[-1]}
    if device.type == "cuda":  # train_stage resets the peak counter at its start: count the caching phase too
        out["peak_bytes"] = max(before, result.peak_memory_bytes or 0)
    return out


def run_diffusers(geometry: dict, device: torch.device, dtype: torch.dtype, cache_latents: bool) -> dict:
    """The core loop of diffusers' train_dreambooth_lora_flux.py, minimal form."""
    from accelerate import Accelerator
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    from diffusers.training_utils import (
        cast_training_params,
        compute_density_for_timestep_sampling,
        compute_loss_weighting_for_sd3,
    )
    from peft import LoraConfig

    from artaug.config import TrainConfig
    from artaug.train.trainer import lora_config

    accelerator = Accelerator(mixed_precision=geometry["precision"])
    transformer, vae = build_models(geometry, device, dtype)
    pixels, embeds, pooled = inputs(geometry, device)
    transformer.requires_grad_(False)
    vae.requires_grad_(False)
    if geometry["checkpointing"]:
        transformer.enable_gradient_checkpointing()
    same_layers = lora_config(TrainConfig(rank=geometry["rank"], alpha=geometry["rank"])).target_modules
    transformer.add_adapter(
        LoraConfig(
            r=geometry["rank"], lora_alpha=geometry["rank"], init_lora_weights="gaussian", target_modules=same_layers
        )
    )
    cast_training_params([transformer], dtype=torch.float32)
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4)
    transformer, optimizer = accelerator.prepare(transformer, optimizer)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    sigmas_table, timesteps_table = scheduler.sigmas.to(device), scheduler.timesteps.to(device)
    embeds, pooled = embeds.to(dtype), pooled.to(dtype)
    text_ids = torch.zeros(embeds.shape[1], 3, device=device, dtype=dtype)
    if cache_latents:
        with torch.no_grad():
            cached = vae.encode(pixels.to(dtype)).latent_dist
    step_seconds, loss = [], None
    for _ in range(geometry["warmup"] + geometry["steps"]):
        tick = time.perf_counter()
        with torch.no_grad():
            dist = cached if cache_latents else vae.encode(pixels.to(dtype)).latent_dist
        x0 = ((dist.sample() - vae.config.shift_factor) * vae.config.scaling_factor).to(dtype)
        b, c, h, w = x0.shape
        image_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, device, dtype)
        noise = torch.randn_like(x0)
        u = compute_density_for_timestep_sampling(weighting_scheme="none", batch_size=b)
        indices = (u * 1000).long()
        timesteps = timesteps_table[indices.to(device)]
        sigmas = sigmas_table[torch.tensor([int((timesteps_table == t).nonzero()) for t in timesteps])]
        sigmas = sigmas.view(-1, 1, 1, 1).to(dtype)
        noisy = (1.0 - sigmas) * x0 + sigmas * noise
        packed = FluxPipeline._pack_latents(noisy, b, c, h, w)
        guidance = torch.full((b,), 1.0, device=device)
        with accelerator.autocast():
            pred = transformer(
                hidden_states=packed,
                timestep=timesteps / 1000,
                guidance=guidance,
                pooled_projections=pooled,
                encoder_hidden_states=embeds,
                txt_ids=text_ids,
                img_ids=image_ids,
                return_dict=False,
            )[0]
        pred = FluxPipeline._unpack_latents(pred, h * 8, w * 8, 8)
        weighting = compute_loss_weighting_for_sd3(weighting_scheme="none", sigmas=sigmas)
        target = noise - x0
        loss = torch.mean((weighting.float() * (pred.float() - target.float()) ** 2).reshape(b, -1), 1).mean()
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        loss = float(loss)
        step_seconds.append(time.perf_counter() - tick)
    return {"step_seconds": step_seconds[geometry["warmup"] :], "loss": loss}


def geometry_for(full: bool, smoke: bool) -> dict:
    if not smoke:
        return FULL if full else SMALL
    # FLUX.1-dev widths, precision and checkpointing at one block each and 256 px: proves the --full code path on a
    # CPU in a minute; its numbers mean nothing.
    transformer = {**FULL["transformer"], "num_layers": 1, "num_single_layers": 1}
    return {**FULL, "transformer": transformer, "resolution": 256, "text_length": 64, "warmup": 1, "steps": 1}


def child(variant: str, full: bool, smoke: bool = False) -> None:
    geometry = geometry_for(full, smoke)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if geometry["precision"] == "bf16" else torch.float32
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if variant == "artaug":
        out = run_artaug(geometry, device, dtype)
    else:
        out = run_diffusers(geometry, device, dtype, cache_latents=variant == "diffusers-cached")
    if device.type == "cuda":
        out["peak_bytes"] = max(out.get("peak_bytes", 0), torch.cuda.max_memory_allocated())
    else:
        out["peak_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out["device"] = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu x{torch.get_num_threads()}"
    print("RESULT " + json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="FLUX.1-dev geometry, bf16, gradient checkpointing (GPU)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per variant; the median counts")
    parser.add_argument("--smoke", action="store_true", help="with --full: one block each, 256 px (checks the code)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.full, args.smoke)
        return
    geometry = geometry_for(args.full, args.smoke)
    print(f"config: {json.dumps({k: v for k, v in geometry.items() if k != 'vae'})}")
    variants = ("artaug", "diffusers", "diffusers-cached")
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    # Interleaved (a, d, c, a, d, c, ...) so a shared machine's load changes hit every variant alike.
    for _ in range(args.repeats):
        for variant in variants:
            cmd = [sys.executable, __file__, "--child", variant]
            cmd += (["--full"] if args.full else []) + (["--smoke"] if args.smoke else [])
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(f"{variant} failed:\n{proc.stderr[-3000:]}")
                continue
            result = json.loads(line[len("RESULT ") :])
            result["rate"] = len(result["step_seconds"]) / sum(result["step_seconds"])
            runs[variant].append(result)
    print(f"{'variant':<18}{'steps/s (median)':>18}{'all runs':>26}{'peak MiB':>10}{'last loss':>11}   device")
    summary = {}
    for variant, results in runs.items():
        if not results:
            continue
        rates = [r["rate"] for r in results]
        summary[variant] = (statistics.median(rates), max(r["peak_bytes"] for r in results))
        rate_list = " ".join(f"{x:.3f}" for x in rates)
        print(
            f"{variant:<18}{summary[variant][0]:>18.3f}{rate_list:>26}{summary[variant][1] / 2**20:>10.0f}"
            f"{results[-1]['loss']:>11.4f}   {results[-1]['device']}"
        )
    if "artaug" in summary:
        for other in ("diffusers", "diffusers-cached"):
            if other in summary:
                (ra, ma), (ro, mo) = summary["artaug"], summary[other]
                print(f"artaug / {other}: speed x{ra / ro:.2f}, peak memory x{ma / mo:.2f}")


if __name__ == "__main__":
    main()
