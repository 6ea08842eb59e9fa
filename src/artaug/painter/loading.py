"""Loading a painter and changing its weights: the pipeline from a hub id or folder, the ``[painter]`` section's
extras (LoRA, VAE tiling, float8, ``compile``, the instruction editor), and LoRAs through diffusers' own API
(``load_lora_weights`` / ``fuse_lora`` / ``unload_lora_weights``, STYLE habit 4: never a model mutated by hand).

``PainterLoading`` is the half of ``BasePainter`` that does this; ``BasePainter`` (``base.py``) paints.
"""

from __future__ import annotations

import math
import os
from typing import Any, ClassVar, Literal

import torch

from artaug.config import OFFLOAD_MODES, PainterConfig
from artaug.painter.editor import InstructionEditor
from artaug.painter.lora import read_lora_tensors
from artaug.painter.requests import resolve_source

Offload = Literal["none", "model", "sequential"]
# How attention mode applies its mask: "lse" merges one unmasked call with small masked ones by log-sum-exp,
# "grouped" runs unmasked attention per group of queries that share allowed keys, "mask" is the masked reference.
AttentionImpl = Literal["lse", "grouped", "mask"]


class PainterLoading:
    """Loading and LoRA for ``BasePainter`` (which sets ``pipe``, ``model_id``, ``attention_impl``, ``memory``,
    ``editor``, the LoRA bookkeeping and ``_compiled``)."""

    pipeline_name: ClassVar[str]  # the diffusers pipeline class a folder's model_index.json names (set by a family)
    example_id: ClassVar[str]  # the family's best-known hub id, for messages

    @classmethod
    def from_pretrained(
        cls,
        id_or_dir: str,
        *,
        dtype: torch.dtype | str = "auto",
        device: str = "auto",
        offload: Offload = "none",
        attention_impl: AttentionImpl = "lse",
    ) -> Any:
        """Load the family's pipeline from a hub id (``cls.example_id``) or a local diffusers folder.

        ``device`` and ``dtype`` "auto" follow ``artaug.devices`` (bfloat16 on CUDA, float32 on the CPU). ``offload``
        "model" moves whole components to the GPU only while they run (FLUX.1-dev on a 24 GB card), "sequential"
        does it layer by layer (slowest, least memory).
        """
        from artaug.devices import resolve_device, resolve_dtype

        if offload not in OFFLOAD_MODES:
            raise ValueError(f"offload must be one of {OFFLOAD_MODES}, got {offload!r}")
        device = resolve_device(device)
        if offload != "none" and torch.device(device).type == "cpu":
            raise ValueError(f"offload={offload!r} moves weights to an accelerator while they run; device is {device}")
        if not isinstance(dtype, torch.dtype):
            dtype = resolve_dtype(dtype, device)
        pipe = cls.load_pipeline(id_or_dir, dtype)
        if offload == "model":
            pipe.enable_model_cpu_offload(device=device)
        elif offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=device)
        else:
            pipe.to(device)
        return cls(pipe, attention_impl=attention_impl)  # model_id: the folder or hub id it was loaded from

    @classmethod
    def load_pipeline(cls, id_or_dir: str, dtype: torch.dtype) -> Any:
        """The family's diffusers pipeline from a hub id or folder, on the CPU; without hub access the error says
        how to use a local folder."""
        import diffusers

        source = resolve_source(id_or_dir, cls.pipeline_name)
        name = cls.example_id.rsplit("/", 1)[-1]
        try:
            return getattr(diffusers, cls.pipeline_name).from_pretrained(source, dtype=dtype)
        except OSError as err:
            if os.path.isdir(source):
                raise OSError(f"could not load a {cls.pipeline_name} from folder {source!r}: {err}") from err
            raise OSError(
                f"could not load {source!r} from the Hugging Face hub ({err}). Without hub access, download the "
                f"model on a connected machine (e.g. `hf download {cls.example_id} --local-dir /path/to/{name}`) "
                f"and point at the local folder: --painter /path/to/{name} "
                f"(Python: {cls.__name__}.from_pretrained('/path/to/{name}'))"
            ) from err

    @classmethod
    def from_config(cls, config: PainterConfig) -> Any:
        """The painter a ``[painter]`` section names, with its LoRA (if any) loaded and fused."""
        if config.lora and os.path.exists(config.lora):
            read_lora_tensors(config.lora)  # a bad LoRA file is an error before gigabytes of weights load
        painter = cls.from_pretrained(
            config.model,
            dtype=config.dtype,
            device=config.device,
            offload=config.offload,
            attention_impl=config.attention_impl,
        )
        if config.lora:
            painter.load_lora(config.lora)
            painter.fuse_lora()
        if config.vae_tiling:
            painter.pipe.vae.enable_tiling()
        if config.quantize == "fp8":  # after the LoRA is fused: the fused weights are the ones stored in float8
            from artaug.painter.quantize import quantize_fp8

            quantize_fp8(painter.pipe.transformer)
        if config.compile:
            painter.compile()
        painter.memory = config.memory
        if config.editor:
            painter.editor = InstructionEditor.from_pretrained(
                config.editor, dtype=config.dtype, device=config.device, offload=config.offload,
                guidance_scale=config.editor_guidance,
            )  # fmt: skip
        return painter

    def compile(self, backend: str = "inductor", mode: str | None = None) -> None:
        """``torch.compile`` the repeated transformer blocks (diffusers' regional compilation) so that no round of
        the loop recompiles them.

        Three things keep shapes and guards stable across paintings: one attention processor stays installed for
        good (regional attention hands it the call's layout instead of swapping processors, so guards on the
        processor hold); local prompts' tokens are padded with invisible tokens to a few bucket sizes
        (``region_bucket``), so 0 to 8 edits reuse a handful of graphs; plain paintings use the same processor with
        no layout. Compile once per bucket (a warm-up painting each), then nothing recompiles. Blend mode runs
        1 + N prompts as a batch and compiles once per batch size.
        """
        if self.attention_impl != "lse":
            raise ValueError(f"compile needs attention_impl 'lse' (static shapes), got {self.attention_impl!r}")
        if self._compiled is not None:
            return
        transformer = self.pipe.transformer
        self._compiled = self._compiled_processor()
        transformer.set_attn_processor(self._compiled)
        transformer.compile_repeated_blocks(backend=backend, mode=mode, fullgraph=True, dynamic=None)

    def load_lora(self, path_or_id: str, adapter_name: str = "artaug", scale: float = 1.0) -> None:
        """Load a LoRA with ``load_lora_weights`` and activate it at ``scale`` beside any already loaded.

        A local file in another key layout than diffusers' own (kohya, DiffSynth-Studio) is converted first
        (``artaug.painter.lora.loadable_lora``)."""
        from artaug.painter.lora import loadable_lora

        if not (isinstance(scale, (int, float)) and math.isfinite(scale)):
            raise ValueError(f"LoRA scale must be a finite number, got {scale!r}")
        source: Any = path_or_id
        layout = "hub"
        if os.path.exists(path_or_id):  # a local file is checked (and converted) before diffusers touches the model
            source, layout = loadable_lora(path_or_id, self.pipe.transformer)
        try:
            self.pipe.load_lora_weights(source, adapter_name=adapter_name)
        except (RuntimeError, ValueError, KeyError, IndexError) as error:  # made for another model's shapes or layers
            if adapter_name in getattr(self.pipe.transformer, "peft_config", {}):
                self.pipe.delete_adapters(adapter_name)
            raise ValueError(
                f"LoRA {path_or_id} ({layout} format) does not fit the painter {self.model_id} ({error})"
            ) from None
        if adapter_name not in getattr(self.pipe.transformer, "peft_config", {}):  # diffusers skips unknown keys
            raise ValueError(
                f"LoRA {path_or_id} ({layout} format) does not fit the painter {self.model_id}: it adapts none of "
                "its layers"
            )
        bad = [n for n, p in self.pipe.transformer.named_parameters() if adapter_name in n and not p.isfinite().all()]
        if bad:
            self.pipe.delete_adapters(adapter_name)
            raise ValueError(f"LoRA {path_or_id} holds NaN or infinite weights (e.g. {bad[0]}); it was not loaded")
        self._lora_scales[adapter_name] = scale
        self.pipe.set_adapters(list(self._lora_scales), adapter_weights=list(self._lora_scales.values()))
        self.clear_prompt_cache()

    def fuse_lora(self, adapter_names: list[str] | None = None, lora_scale: float = 1.0) -> None:
        """Fuse loaded LoRAs into the base weights (the pipeline's ``fuse_lora``): same output, no per-step cost."""
        if not self._lora_scales:
            raise ValueError("no LoRA loaded: call load_lora first")
        self.pipe.fuse_lora(adapter_names=adapter_names or list(self._lora_scales), lora_scale=lora_scale)
        self._fused = True
        self.clear_prompt_cache()

    def unload_lora(self, keep_fused: bool = False) -> None:
        """Remove every LoRA. A fused LoRA is unfused first, so the base output comes back, unless ``keep_fused``."""
        if self._fused and not keep_fused:
            self.pipe.unfuse_lora()
        self.pipe.unload_lora_weights()
        self._lora_scales.clear()
        self._fused = False
        self.clear_prompt_cache()
