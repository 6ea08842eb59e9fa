"""Combine LoRAs by summing their weight updates, and re-compress a LoRA to a lower rank.

Averaging the ``A`` and ``B`` matrices of two LoRAs separately does not give the average of their updates
(``(B1 + B2)(A1 + A2) / 4`` has cross terms). Stacking them along the rank does, exactly:
``[w1 s1 B1 | w2 s2 B2] @ [A1 ; A2] = w1 s1 B1 A1 + w2 s2 B2 A2``. The rank grows to the sum of the ranks;
``recompress`` brings it back down with the truncated SVD of each layer's update (Eckart-Young: the best rank-R
approximation in Frobenius norm), computed from thin QR factors so the full ``out x in`` matrix is never formed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from artaug.train.lora_io import Lora


def merge_loras(loras: Sequence[Lora], weights: Sequence[float] | None = None) -> Lora:
    """The LoRA whose update is ``sum_i weights[i] * update_i`` in every layer (scales folded into B, scale 1).

    A layer missing from some LoRAs gets zero rows there, so every layer has the same rank (the sum of ranks).
    """
    if not loras:
        raise ValueError("nothing to merge")
    weights = list(weights) if weights is not None else [1.0] * len(loras)
    if len(weights) != len(loras):
        raise ValueError(f"{len(weights)} weights for {len(loras)} LoRAs")
    if not all(isinstance(w, (int, float)) and math.isfinite(w) for w in weights):
        raise ValueError(f"merge weights must be finite numbers, got {weights}")
    ranks = []
    for i, lora in enumerate(loras):
        r = {a.shape[0] for a, _, _ in lora.values()}
        if len(r) != 1:
            raise ValueError(f"LoRA {i} has layers of different ranks {sorted(r)}; merge supports one rank per LoRA")
        ranks.append(r.pop())
    merged: Lora = {}
    for module in sorted(set().union(*loras)):
        shape = next((lora[module][0].shape[1], lora[module][1].shape[0]) for lora in loras if module in lora)
        downs, ups = [], []
        for lora, w, r in zip(loras, weights, ranks, strict=True):
            if module in lora:
                a, b, s = lora[module]
                if (a.shape[1], b.shape[0]) != shape:
                    raise ValueError(
                        f"layer {module}: shapes differ between LoRAs ({a.shape[1]}->{b.shape[0]} vs "
                        f"{shape[0]}->{shape[1]}); were they trained on the same base model?"
                    )
                downs.append(a.float())
                ups.append(b.float() * (w * s))
            else:
                downs.append(torch.zeros(r, shape[0]))
                ups.append(torch.zeros(shape[1], r))
        merged[module] = (torch.cat(downs), torch.cat(ups, dim=1), 1.0)
    return merged


@dataclass
class Recompression:
    """The re-compressed LoRA and, per layer, the relative Frobenius error ``|dW - dW_R| / |dW|`` it makes."""

    lora: Lora
    errors: dict[str, float]

    @property
    def max_error(self) -> float:
        return max(self.errors.values(), default=0.0)

    @property
    def mean_error(self) -> float:
        return sum(self.errors.values()) / len(self.errors) if self.errors else 0.0


def recompress(lora: Lora, rank: int) -> Recompression:
    """Best rank-``rank`` approximation of every layer's update, split as ``B = U sqrt(S)``, ``A = sqrt(S) V^T``."""
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    out: Lora = {}
    errors: dict[str, float] = {}
    for module, (a, b, s) in lora.items():
        # dW = s B A = Qb (s Rb Ra^T) Qa^T with thin QR factors; the SVD of the small core gives dW's SVD.
        qb, rb = torch.linalg.qr(b.double())
        qa, ra = torch.linalg.qr(a.double().T)
        u, sv, vh = torch.linalg.svd(s * rb @ ra.T)
        r = min(rank, sv.numel())
        root = sv[:r].sqrt()
        out[module] = ((root[:, None] * (vh[:r] @ qa.T)).float(), ((qb @ u[:, :r]) * root).float(), 1.0)
        total = float(sv.square().sum())
        errors[module] = (float(sv[r:].square().sum()) / total) ** 0.5 if total > 0 else 0.0
    return Recompression(out, errors)
