"""The broken-image gate: cheap pixel statistics that catch the failures a sampler produces, with no model at all.

The published ArtAug loop "sometimes produced broken images": NaNs in the latents (decoded as a black frame),
exposure blown to pure white or black, a flat single-colour canvas, colours saturated against the 0/255 rails, or
the sampler's noise left undenoised. Each of those has a plain statistical signature, checked here in a few
milliseconds so the loop can refuse a revision before any scorer loads.

Thresholds live in :class:`artaug.config.BrokenConfig`; they are set loose enough that dark, bright, minimal or busy
*real* pictures pass, and that the random-weight tiny painter's outputs (smooth colour blobs) pass too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from artaug.config import BrokenConfig

if TYPE_CHECKING:
    import torch
    from PIL import Image

# ITU-R BT.601 luma weights: what "brightness" means to a viewer, not a channel average.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def check(image: Image.Image, latents: torch.Tensor | None = None, config: BrokenConfig | None = None) -> list[str]:
    """Every reason ``image`` (and the ``latents`` it was decoded from, if given) looks broken; empty if sound.

    Each problem is a short human-readable sentence with the measured value and the threshold it crossed, e.g.
    ``"near-black: 99.5th percentile luminance 0.012 < 0.080"``.
    """
    config = config or BrokenConfig()
    problems: list[str] = []

    # 1. Non-finite latents: the usual root cause of a black frame (fp16 overflow, a bad LoRA); report it first.
    if latents is not None:
        problems += _nonfinite_problems(latents)

    # 2. Pixels as float RGB in [0, 1]; float images ("F" mode) may carry NaN/inf themselves.
    pixels, pixel_problems = _to_rgb_float(image)
    problems += pixel_problems
    if pixels is None:
        return problems

    # 3. Exposure, flatness and clipping, from global statistics.
    luma = pixels @ _LUMA
    low, high = np.percentile(luma, [0.5, 99.5])
    if high < config.black_level:
        problems.append(f"near-black: 99.5th percentile luminance {high:.3f} < {config.black_level:.3f}")
    if low > config.white_level:
        problems.append(f"near-white: 0.5th percentile luminance {low:.3f} > {config.white_level:.3f}")
    spread = float(pixels.reshape(-1, 3).std(axis=0).max())
    if spread < config.flat_std:
        problems.append(f"near-flat: largest channel std {spread:.4f} < {config.flat_std:.4f}")
    clipped = float(np.mean((pixels <= 0.5 / 255) | (pixels >= 254.5 / 255)))
    if clipped > config.clipped_fraction:
        problems.append(
            f"heavily clipped: {clipped:.0%} of channel values at 0 or 255 (> {config.clipped_fraction:.0%})"
        )

    # 4. Pure noise: a flat image has no correlation to measure, so only ask when there is contrast.
    if spread >= config.flat_std:
        correlation = neighbour_correlation(luma)
        if correlation < config.noise_correlation:
            problems.append(
                f"pure high-frequency noise: neighbouring-pixel correlation {correlation:.2f} "
                f"< {config.noise_correlation:.2f}"
            )
    return problems


def neighbour_correlation(luma: np.ndarray) -> float:
    """Pearson correlation of each pixel with its right and lower neighbour (the smaller of the two).

    Natural images have a ~1/f² power spectrum, so adjacent pixels are strongly correlated (typically > 0.8);
    independent per-pixel noise gives ~0 and a checkerboard -1. Taking the minimum over the two axes catches
    noise that is smooth along one axis only (stripes).
    """
    if luma.shape[0] < 2 or luma.shape[1] < 2:
        return 1.0
    return min(_pearson(luma[:, :-1], luma[:, 1:]), _pearson(luma[:-1, :], luma[1:, :]))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    # A constant shifted plane carries no evidence of noise: call it perfectly correlated.
    return float((a * b).sum()) / denominator if denominator > 0 else 1.0


def _nonfinite_problems(latents: torch.Tensor) -> list[str]:
    values = latents.detach().float()
    bad = int((~values.isfinite()).sum())
    if bad == 0:
        return []
    nans = int(values.isnan().sum())
    return [f"latents not finite: {nans} NaN and {bad - nans} inf of {values.numel()} values"]


def _to_rgb_float(image: Image.Image) -> tuple[np.ndarray | None, list[str]]:
    if image.width == 0 or image.height == 0:
        return None, [f"empty image: {image.width}x{image.height}"]
    if image.mode == "F":
        # A float image comes straight from a tensor: NaN/inf survive here and nowhere else in PIL.
        values = np.asarray(image, dtype=np.float32)
        bad = int((~np.isfinite(values)).sum())
        if bad:
            return None, [f"pixels not finite: {bad} of {values.size} values are NaN or inf"]
        values = np.clip(values / 255.0, 0.0, 1.0)
        return np.repeat(values[..., None], 3, axis=-1), []
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0, []
