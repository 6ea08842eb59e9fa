"""Flow-matching training math: noising, target, timestep sampling and loss weighting.

Rectified flow (Esser et al. 2024, "Scaling Rectified Flow Transformers", the SD3 paper) interpolates
``x_t = (1 - sigma) * x0 + sigma * noise`` and regresses the velocity ``noise - x0``. Where on the schedule the
model is trained matters; two densities are offered:

* ``shifted`` -- DiffSynth-Studio's FLUX LoRA recipe (used by ArtAug): a 1000-entry table of sigmas spaced evenly
  from 1 to ~0.003, shifted by ``s*sigma / (1 + (s-1)*sigma)``; a table entry is drawn uniformly and its loss is
  weighted by a Gaussian bump centred on sigma = 0.5, ``exp(-2 (sigma - 0.5)^2)``, minus its minimum and
  normalised to mean 1 over the table, so mid-schedule steps count most and the ends almost nothing.
* ``logit_normal`` -- the SD3 paper's density: ``sigma = shift(sigmoid(n))``, ``n ~ N(mean, std)``, unweighted.
"""

from __future__ import annotations

import functools

import torch

TABLE_SIZE = 1000
SIGMA_MIN = 0.003 / 1.002  # the lower end of DiffSynth-Studio's training table


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def sigma_table(shift: float, size: int = TABLE_SIZE) -> torch.Tensor:
    """The shifted training sigmas, from ~1 down to ~0.003 (float64 for an exact, device-independent table)."""
    return shift_sigmas(torch.linspace(1.0, SIGMA_MIN, size, dtype=torch.float64), shift)


def mid_schedule_weights(sigmas: torch.Tensor) -> torch.Tensor:
    """Gaussian bump around sigma = 0.5, shifted to a zero minimum and normalised to mean 1 over ``sigmas``."""
    bump = torch.exp(-2 * (sigmas - 0.5) ** 2)
    bump = bump - bump.min()
    return bump * (len(sigmas) / bump.sum())


def sample_sigmas(
    batch_size: int,
    generator: torch.Generator,
    sampling: str = "shifted",
    shift: float = 3.0,
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``batch_size`` sigmas and their loss weights (float32, CPU) from ``generator``."""
    if sampling == "shifted":
        table, weights = _shifted_table(shift)
        index = torch.randint(0, len(table), (batch_size,), generator=generator)
        return table[index], weights[index]
    if sampling == "logit_normal":
        n = torch.randn(batch_size, generator=generator, dtype=torch.float64) * logit_std + logit_mean
        return shift_sigmas(torch.sigmoid(n), shift).float(), torch.ones(batch_size)
    raise ValueError(f"unknown timestep sampling {sampling!r}; use 'shifted' or 'logit_normal'")


@functools.lru_cache(maxsize=8)
def _shifted_table(shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    table = sigma_table(shift)
    return table.float(), mid_schedule_weights(table).float()


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """``x_t = (1 - sigma) x0 + sigma noise``, sigma broadcast over all but the batch dimension."""
    s = sigmas.view(-1, *([1] * (x0.ndim - 1))).to(x0)
    return (1 - s) * x0 + s * noise


def flow_matching_loss(
    prediction: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Weighted MSE against the velocity target ``noise - x0``, in float32, per example, then batch-averaged."""
    target = (noise - x0).float()
    per_example = ((prediction.float() - target) ** 2).flatten(1).mean(1)
    return (weights.to(per_example) * per_example).mean()
