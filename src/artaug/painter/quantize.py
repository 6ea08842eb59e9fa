"""Float8 weights for the painter's transformer (``painter.quantize = "fp8"``), through torchao."""

from __future__ import annotations

import torch


def quantize_fp8(transformer: torch.nn.Module) -> None:
    """Store every linear weight of the transformer blocks in float8 (torchao's weight-only float8): about half the
    memory of bfloat16 (FLUX.1-dev's 12B parameters in ~12 GB); activations stay in the painter's dtype."""
    try:
        from torchao.quantization import Float8WeightOnlyConfig, quantize_
    except ImportError:
        raise ImportError("painter.quantize = fp8 needs torchao: pip install 'artaug[fp8]'") from None

    def in_blocks(module: torch.nn.Module, name: str) -> bool:
        return isinstance(module, torch.nn.Linear) and "transformer_blocks." in name

    quantize_(transformer, Float8WeightOnlyConfig(), filter_fn=in_blocks)
