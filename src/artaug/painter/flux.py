"""The painter: FLUX text-to-image through diffusers, and regional repaint from a critique's edits.

``FluxPainter`` wraps a stock ``diffusers.FluxPipeline`` and reuses its own pieces (prompt encoding, latent
preparation, packing, timesteps, scheduler, VAE); only the denoising loop is written here, because regional control
needs to change what each step predicts. Without edits the loop is step for step the pipeline's, so the image is
pixel-identical to ``FluxPipeline(...)`` with ``generator=torch.Generator("cpu").manual_seed(seed)``.

Regional modes (see ``artaug.painter.regions``):

* ``blend`` -- ArtAug's partition formula: the global prompt and every local prompt are predicted in one batched
  transformer call per step (1 + N sequences) and mixed by their box masks.
* ``attention`` -- one pass per step: local prompts' text tokens join the joint attention sequence and a boolean mask
  restricts text<->image attention to each box. Attention processors are installed for the call and restored after.
  By default they compute the masked attention as unmasked calls over groups of queries that share their allowed
  keys (``attention_impl="grouped"``: a mask would rule out FlashAttention); ``"mask"`` hands the mask to diffusers'
  own processors instead (the reference, identical to ``FluxPipeline`` with ``joint_attention_kwargs``). The mask is
  hard (every token a box touches), so ``blur_sigma`` and ``Edit.weight`` apply to blend mode only.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal

import torch

from artaug.config import ATTENTION_IMPLS, OFFLOAD_MODES, PainterConfig
from artaug.painter import regions
from artaug.painter.attention import (
    GroupedRegionalAttnProcessor,
    LseRegionalAttnProcessor,
    RegionalAttnProcessor,
    regional_processors,
)
from artaug.painter.lora import read_lora_tensors
from artaug.types import Cost, Painting, PaintRequest

if TYPE_CHECKING:
    from diffusers import FluxPipeline

logger = logging.getLogger(__name__)

Offload = Literal["none", "model", "sequential"]
# How attention mode applies its mask: "grouped" runs unmasked attention per group of queries that share allowed keys
# (fused kernels stay usable); "mask" hands the boolean mask to the pipeline's own processors (the reference).
AttentionImpl = Literal["lse", "grouped", "mask"]
_PROMPT_CACHE_SIZE = 16


class FluxPainter:
    """Paints ``PaintRequest``s with a FLUX pipeline; see the module docstring for the regional modes.

    ``max_batch`` caps how many prompt sequences one transformer call carries in blend mode (None: all 1 + N at
    once; on out-of-memory the batch is halved and a warning logged). ``attention_impl`` picks how attention mode
    applies its mask (``AttentionImpl``; both compute the same attention). ``cache_prompts`` keeps the last few prompt
    encodings (the loop repaints the same global prompt every round); encoders are deterministic, so this is exact,
    and the cache is cleared whenever LoRAs change through this class. Call ``clear_prompt_cache()`` after changing
    ``pipe``'s text encoders by hand.
    """

    def __init__(
        self,
        pipe: FluxPipeline,
        model_id: str = "",
        *,
        max_batch: int | None = None,
        cache_prompts: bool = True,
        attention_impl: AttentionImpl = "lse",
    ) -> None:
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be >= 1 or None, got {max_batch}")
        if attention_impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention_impl must be one of {ATTENTION_IMPLS}, got {attention_impl!r}")
        self.pipe = pipe
        self.model_id = model_id or getattr(pipe.config, "_name_or_path", "") or type(pipe).__name__
        self.max_batch = max_batch
        self.cache_prompts = cache_prompts
        self.attention_impl: AttentionImpl = attention_impl
        self._prompt_cache: OrderedDict[tuple, tuple[torch.Tensor, ...]] = OrderedDict()
        self._lora_scales: dict[str, float] = {}
        self._fused = False
        self._compiled: LseRegionalAttnProcessor | None = None  # the one processor of a compiled transformer
        self.memory = "none"  # the memory preset it was loaded with (``painter.memory``), for the out-of-memory hint

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls,
        id_or_dir: str,
        *,
        dtype: torch.dtype | str = "auto",
        device: str = "auto",
        offload: Offload = "none",
        attention_impl: AttentionImpl = "lse",
    ) -> FluxPainter:
        """Load a FLUX pipeline from a hub id (``black-forest-labs/FLUX.1-dev``) or a local diffusers folder.

        ``device`` and ``dtype`` "auto" follow ``artaug.devices`` (bfloat16 on CUDA, float32 on the CPU). ``offload``
        "model" moves whole components to the GPU only while they run (FLUX.1-dev on a 24 GB card), "sequential"
        does it layer by layer (slowest, least memory).
        """
        from diffusers import FluxPipeline

        from artaug.devices import resolve_device, resolve_dtype

        if offload not in OFFLOAD_MODES:
            raise ValueError(f"offload must be one of {OFFLOAD_MODES}, got {offload!r}")
        device = resolve_device(device)
        if offload != "none" and torch.device(device).type == "cpu":
            raise ValueError(f"offload={offload!r} moves weights to an accelerator while they run; device is {device}")
        if not isinstance(dtype, torch.dtype):
            dtype = resolve_dtype(dtype, device)
        source = _resolve_source(id_or_dir)
        try:
            pipe = FluxPipeline.from_pretrained(source, dtype=dtype)
        except OSError as err:
            if os.path.isdir(source):
                raise OSError(f"could not load a FLUX pipeline from folder {source!r}: {err}") from err
            raise OSError(
                f"could not load {source!r} from the Hugging Face hub ({err}). Without hub access, download the "
                "model on a connected machine (e.g. `hf download black-forest-labs/FLUX.1-dev --local-dir "
                "/path/to/FLUX.1-dev`) and point at the local folder: --painter /path/to/FLUX.1-dev "
                "(Python: FluxPainter.from_pretrained('/path/to/FLUX.1-dev'))"
            ) from err
        if offload == "model":
            pipe.enable_model_cpu_offload(device=device)
        elif offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=device)
        else:
            pipe.to(device)
        return cls(pipe, source, attention_impl=attention_impl)

    @classmethod
    def from_config(cls, config: PainterConfig) -> FluxPainter:
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
        if config.compile:
            painter.compile()
        painter.memory = config.memory
        return painter

    def compile(self, backend: str = "inductor", mode: str | None = None) -> None:
        """``torch.compile`` the repeated transformer blocks (diffusers' regional compilation) so that no round of
        the loop recompiles them.

        Three things keep shapes and guards stable across paintings: one attention processor stays installed for
        good (regional attention sets its ``layout`` for a call instead of swapping processors, so guards on the
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
        backend_of = {getattr(p, "_attention_backend", None) for p in transformer.attn_processors.values()}
        self._compiled = LseRegionalAttnProcessor(None, backend_of.pop() if len(backend_of) == 1 else None)
        transformer.set_attn_processor(self._compiled)
        transformer.compile_repeated_blocks(backend=backend, mode=mode, fullgraph=True, dynamic=None)

    # ------------------------------------------------------------------ LoRA (diffusers' own API)

    def load_lora(self, path_or_id: str, adapter_name: str = "artaug", scale: float = 1.0) -> None:
        """Load a LoRA with ``load_lora_weights`` and activate it at ``scale`` beside any already loaded."""
        if not (isinstance(scale, (int, float)) and math.isfinite(scale)):
            raise ValueError(f"LoRA scale must be a finite number, got {scale!r}")
        if os.path.exists(path_or_id):
            read_lora_tensors(path_or_id)  # a local file is checked before diffusers touches the model
        try:
            self.pipe.load_lora_weights(path_or_id, adapter_name=adapter_name)
        except (RuntimeError, ValueError, KeyError, IndexError) as error:  # made for another model's shapes or layers
            if adapter_name in getattr(self.pipe.transformer, "peft_config", {}):
                self.pipe.delete_adapters(adapter_name)
            raise ValueError(f"LoRA {path_or_id} does not fit the painter {self.model_id} ({error})") from None
        bad = [n for n, p in self.pipe.transformer.named_parameters() if adapter_name in n and not p.isfinite().all()]
        if bad:
            self.pipe.delete_adapters(adapter_name)
            raise ValueError(f"LoRA {path_or_id} holds NaN or infinite weights (e.g. {bad[0]}); it was not loaded")
        self._lora_scales[adapter_name] = scale
        self.pipe.set_adapters(list(self._lora_scales), adapter_weights=list(self._lora_scales.values()))
        self.clear_prompt_cache()

    def fuse_lora(self, adapter_names: list[str] | None = None, lora_scale: float = 1.0) -> None:
        """Fuse loaded LoRAs into the base weights (``FluxPipeline.fuse_lora``): same output, no per-step cost."""
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

    def clear_prompt_cache(self) -> None:
        self._prompt_cache.clear()

    # ------------------------------------------------------------------ painting

    @torch.no_grad()
    def paint(
        self,
        request: PaintRequest,
        init: Painting | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Painting:
        """Render ``request``; with ``init`` and ``request.strength`` < 1, revise ``init`` from partway through.

        Out of GPU memory, the error names the memory preset to try next."""
        try:
            return self._paint(request, init, progress)
        except torch.OutOfMemoryError as error:
            raise torch.OutOfMemoryError(out_of_memory_hint(self.memory, error)) from None

    def _paint(self, request: PaintRequest, init: Painting | None, progress: Callable[[int, int], None] | None):
        started = time.perf_counter()
        pipe = self.pipe

        # 1. Check inputs
        check_request(request, init)
        device = pipe._execution_device

        # 2. Encode the global prompt (and, below, the local ones)
        embeds, pooled = self._encode(request.prompt, request.max_sequence_length, device)

        # 3. The seed's noise, drawn exactly as FluxPipeline draws it, and the row-major image token ids
        generator = torch.Generator("cpu").manual_seed(request.seed)
        channels = pipe.transformer.config.in_channels // 4
        noise, image_ids = pipe.prepare_latents(
            1, channels, request.height, request.width, embeds.dtype, device, generator
        )

        # 4. Timesteps (resolution-shifted like FluxPipeline) and where this painting starts in them
        timesteps = self._timesteps(request.num_inference_steps, noise.shape[1], device)
        start = start_index(len(timesteps), request.strength) if init is not None else 0
        pipe.scheduler.set_begin_index(start)
        latents = noise
        if start > 0:
            x0 = self._init_latents(init, request, noise)
            latents = pipe.scheduler.scale_noise(x0, timesteps[start : start + 1], noise)

        # 5. Regional conditioning: a function from (latents, t) to the velocity, and its passes per step
        predict, passes, processors = self._conditioning(request, embeds, pooled, image_ids, device)

        # 6. Denoise: Euler steps of the flow-matching scheduler
        run = timesteps[start:]
        with processors:
            for i, t in enumerate(run):
                velocity = predict(latents, t)
                latents = pipe.scheduler.step(velocity, t, latents, return_dict=False)[0]
                if progress is not None:
                    progress(i + 1, len(run))

        # 7. Decode
        image = self._decode(latents, request)
        pipe.maybe_free_model_hooks()
        cost = Cost(transformer_passes=passes * len(run), steps=len(run), seconds=time.perf_counter() - started)
        return Painting(image=image, request=request, cost=cost, model=self.model_id, latents=latents)

    # ------------------------------------------------------------------ steps of paint()

    @torch.no_grad()
    def predict(self, request: PaintRequest, latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The velocity one denoising step of ``paint(request)`` would use at packed ``latents`` and timestep ``t``.

        For inspecting and testing regional control (e.g. that blend leaves the prediction outside every box alone).
        """
        check_request(request.replace(strength=1.0))
        device = self.pipe._execution_device
        embeds, pooled = self._encode(request.prompt, request.max_sequence_length, device)
        rows, cols = regions.token_grid(request.height, request.width)
        image_ids = self.pipe._prepare_latent_image_ids(1, rows, cols, device, embeds.dtype)
        predict, _, processors = self._conditioning(request, embeds, pooled, image_ids, device)
        with processors:
            return predict(latents.to(device, embeds.dtype), t.to(device))

    def _conditioning(self, request, embeds, pooled, image_ids, device) -> tuple[Callable, int, Any]:
        """The step's velocity function, its transformer passes per step, and a context to run it in."""
        guidance = self._guidance(request.guidance_scale, device)
        text_ids = self._text_ids(embeds.shape[1], device)
        if not request.edits:
            return self._plain(embeds, pooled, text_ids, image_ids, guidance), 1, self._layout_context(None)
        if request.regional == "blend":
            predict, passes = self._blend(request, embeds, pooled, text_ids, image_ids, guidance, device)
            return predict, passes, self._layout_context(None)
        predict, layout = self._attention(request, embeds, pooled, image_ids, guidance, device)
        if self._compiled is not None:
            return predict, 1, self._layout_context(layout)
        return predict, 1, regional_processors(self.pipe.transformer, self._processor_factory(layout))

    @contextlib.contextmanager
    def _layout_context(self, layout: regions.RegionalLayout | None) -> Iterator[None]:
        """A compiled transformer keeps its processor: the call's regional layout is set on it, and cleared after."""
        if self._compiled is None:
            yield
            return
        self._compiled.layout = layout
        try:
            yield
        finally:
            self._compiled.layout = None

    def _processor_factory(self, layout: regions.RegionalLayout) -> Callable[[Any], Any]:
        """original processor -> the regional processor that replaces it for one call, per ``attention_impl``.

        Masks and index tensors are built once per request, on the model's device (``layout`` already is)."""
        if self.attention_impl == "lse":
            return lambda inner: LseRegionalAttnProcessor(layout, getattr(inner, "_attention_backend", None))
        allowed = layout.allowed()
        if self.attention_impl == "mask":
            return lambda inner: RegionalAttnProcessor(inner, allowed[None, None])
        if self.attention_impl == "grouped":
            shared = GroupedRegionalAttnProcessor(regions.attention_groups(allowed))
            return lambda inner: shared
        raise ValueError(f"attention_impl must be one of {ATTENTION_IMPLS}, got {self.attention_impl!r}")

    def _encode(self, prompt: str, max_sequence_length: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        """T5 sequence embeddings and CLIP pooled embedding of one prompt, cached by prompt, length, device, dtype."""
        encoder = self.pipe.text_encoder_2
        key = (prompt, max_sequence_length, str(device), str(encoder.dtype) if encoder is not None else "")
        if self.cache_prompts and key in self._prompt_cache:
            self._prompt_cache.move_to_end(key)
            return self._prompt_cache[key]
        embeds, pooled, _ = self.pipe.encode_prompt(
            prompt=prompt, prompt_2=None, device=device, max_sequence_length=max_sequence_length
        )
        if self.cache_prompts:
            self._prompt_cache[key] = (embeds, pooled)
            while len(self._prompt_cache) > _PROMPT_CACHE_SIZE:
                self._prompt_cache.popitem(last=False)
        return embeds, pooled

    def _timesteps(self, num_inference_steps: int, image_seq_len: int, device: torch.device) -> torch.Tensor:
        import numpy as np
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps

        config = self.pipe.scheduler.config
        sigmas = np.linspace(1.0, 1 / num_inference_steps, num_inference_steps)
        if getattr(config, "use_flow_sigmas", False):
            sigmas = None
        mu = calculate_shift(
            image_seq_len,
            config.get("base_image_seq_len", 256),
            config.get("max_image_seq_len", 4096),
            config.get("base_shift", 0.5),
            config.get("max_shift", 1.15),
        )
        timesteps, _ = retrieve_timesteps(self.pipe.scheduler, num_inference_steps, device, sigmas=sigmas, mu=mu)
        return timesteps

    def _text_ids(self, length: int, device: torch.device) -> torch.Tensor:
        # FluxPipeline.encode_prompt: all-zero text position ids, in the CLIP encoder's dtype.
        pipe = self.pipe
        dtype = pipe.text_encoder.dtype if pipe.text_encoder is not None else pipe.transformer.dtype
        return torch.zeros(length, 3, device=device, dtype=dtype)

    def _guidance(self, guidance_scale: float, device: torch.device) -> torch.Tensor | None:
        if not self.pipe.transformer.config.guidance_embeds:
            return None
        return torch.full([1], guidance_scale, device=device, dtype=torch.float32)

    def _init_latents(self, init: Painting, request: PaintRequest, noise: torch.Tensor) -> torch.Tensor:
        """The clean packed latents to revise: ``init.latents`` if present, else the VAE encoding of its image."""
        if init.latents is not None:
            if init.latents.shape != noise.shape:
                raise ValueError(f"init latents {tuple(init.latents.shape)} do not match {tuple(noise.shape)}")
            return init.latents.to(noise.device, noise.dtype)
        pipe = self.pipe
        pixels = pipe.image_processor.preprocess(init.image, height=request.height, width=request.width)
        encoded = pipe.vae.encode(pixels.to(_execution_device(pipe.vae), pipe.vae.dtype)).latent_dist.mode()
        encoded = (encoded - pipe.vae.config.shift_factor) * pipe.vae.config.scaling_factor
        _, c, h, w = encoded.shape
        return pipe._pack_latents(encoded, 1, c, h, w).to(noise.device, noise.dtype)

    def _transformer(self, latents, t, embeds, pooled, text_ids, image_ids, guidance, kwargs=None) -> torch.Tensor:
        """One transformer call, argument for argument as FluxPipeline makes it."""
        batch = latents.shape[0]
        timestep = t.expand(batch).to(latents.dtype)
        transformer = self.pipe.transformer
        # FluxPipeline runs the conditional pass in a "cond" cache context (used by diffusers' step caches).
        cache = getattr(transformer, "cache_context", None)
        with cache("cond") if cache is not None else contextlib.nullcontext():
            return transformer(
                hidden_states=latents,
                timestep=timestep / 1000,
                guidance=guidance.expand(batch) if guidance is not None else None,
                pooled_projections=pooled,
                encoder_hidden_states=embeds,
                txt_ids=text_ids,
                img_ids=image_ids,
                joint_attention_kwargs=kwargs or {},
                return_dict=False,
            )[0]

    def _plain(self, embeds, pooled, text_ids, image_ids, guidance) -> Callable[[torch.Tensor, Any], torch.Tensor]:
        def predict(latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self._transformer(latents, t, embeds, pooled, text_ids, image_ids, guidance)

        return predict

    def _blend(self, request, embeds, pooled, text_ids, image_ids, guidance, device) -> tuple[Callable, int]:
        """Batched predictions of the distinct prompts among [P, P_1..P_N], mixed by ``regions.blend``.

        A local prompt equal to the global one (or to another local prompt) reuses that prediction: the formula
        gives the same result, one pass cheaper, and bit-exactly (a batched call may differ from a single one in the
        last bits).
        """
        prompts = list(dict.fromkeys([request.prompt, *(e.prompt for e in request.edits)]))
        encoded = [(embeds, pooled)] + [self._encode(p, request.max_sequence_length, device) for p in prompts[1:]]
        all_embeds = torch.cat([e for e, _ in encoded])
        all_pooled = torch.cat([p for _, p in encoded])
        which = [prompts.index(e.prompt) for e in request.edits]
        masks = region_masks(request)
        edit_weights = [e.weight for e in request.edits]

        def predict(latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            v = self._batched(latents, t, all_embeds, all_pooled, text_ids, image_ids, guidance)
            return regions.blend(v[:1], v[which, None], masks.to(v.device), edit_weights)

        return predict, len(prompts)

    def _batched(self, latents, t, embeds, pooled, text_ids, image_ids, guidance) -> torch.Tensor:
        total = embeds.shape[0]
        while True:
            size = min(self.max_batch or total, total)
            try:
                outputs = [
                    self._transformer(
                        latents.expand(min(size, total - i), -1, -1),
                        t,
                        embeds[i : i + size],
                        pooled[i : i + size],
                        text_ids,
                        image_ids,
                        guidance,
                    )
                    for i in range(0, total, size)
                ]
                return torch.cat(outputs)
            except torch.cuda.OutOfMemoryError:  # an alias of torch.OutOfMemoryError (any device) in torch >= 2.5
                if size == 1:
                    raise
                self.max_batch = max(1, size // 2)
                logger.warning("out of memory at %d sequences per call; blend now uses %d", size, self.max_batch)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()

    def _attention(self, request, embeds, pooled, image_ids, guidance, device) -> tuple[Callable, Any]:
        """Single pass: region texts appended to the base text; returns the step function and the regional layout.

        Each local prompt is encoded at its own token length (at most ``region_max_sequence_length``), not padded:
        padding tokens would only add work to every layer of every step.
        """
        cap = request.region_max_sequence_length
        encoded = [self._encode(e.prompt, self.local_prompt_length(e.prompt, cap), device) for e in request.edits]
        lengths = [e.shape[1] for e, _ in encoded]
        # A compiled transformer sees the local prompts' tokens padded to a bucket size (invisible padding tokens).
        pad_to = region_bucket(sum(lengths)) if self._compiled is not None else sum(lengths)
        padding = embeds.new_zeros(1, pad_to - sum(lengths), embeds.shape[2])
        joint = torch.cat([embeds, *(e for e, _ in encoded), padding], dim=1)
        text_ids = self._text_ids(joint.shape[1], device)
        masks = regions.token_masks(_boxes(request), *_hw(request))
        layout = regions.regional_layout(embeds.shape[1], lengths, masks, pad_to=pad_to).to(device)

        def predict(latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self._transformer(latents, t, joint, pooled, text_ids, image_ids, guidance)

        return predict, layout

    def local_prompt_length(self, prompt: str, cap: int) -> int:
        """T5 tokens of ``prompt`` (end-of-sequence included), at most ``cap``: the length it is encoded at."""
        ids = self.pipe.tokenizer_2(prompt, truncation=True, max_length=cap, add_special_tokens=True).input_ids
        return max(1, len(ids))

    def _decode(self, latents: torch.Tensor, request: PaintRequest):
        pipe = self.pipe
        unpacked = pipe._unpack_latents(latents, request.height, request.width, pipe.vae_scale_factor)
        unpacked = (unpacked / pipe.vae.config.scaling_factor) + pipe.vae.config.shift_factor
        pixels = pipe.vae.decode(unpacked.to(_execution_device(pipe.vae)), return_dict=False)[0]
        return pipe.image_processor.postprocess(pixels, output_type="pil")[0]


# ---------------------------------------------------------------------- helpers


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


def out_of_memory_hint(preset: str, error: BaseException) -> str:
    """What to try after running out of GPU memory with ``preset`` (``painter.memory``)."""
    following = {"none": "24gb", "80gb": "48gb", "48gb": "24gb", "24gb": "16gb"}.get(preset)
    first = str(error).splitlines()[0][:200] if str(error) else "out of memory"
    if following is None:
        return (f"out of GPU memory even with --memory {preset} ({first}); paint smaller images, or run the critic "
                "as an endpoint (--critic http://...) so that the whole card is the painter's")  # fmt: skip
    return (f"out of GPU memory with memory preset {preset!r} ({first}); try --memory {following}, and an endpoint "
            "critic (--critic http://...) leaves the whole card to the painter")  # fmt: skip


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
    masks = regions.token_masks(_boxes(request), *_hw(request))
    if request.blur_sigma > 0:
        masks = regions.blur_token_masks(masks, *_hw(request), sigma=request.blur_sigma)
    return masks


def _boxes(request: PaintRequest) -> list:
    return [e.box for e in request.edits]


def _hw(request: PaintRequest) -> tuple[int, int]:
    return request.height, request.width


def _execution_device(module: torch.nn.Module) -> torch.device:
    """Where a module's inputs must go; with CPU offload that is the hook's device, not the weights'."""
    try:
        from diffusers.utils.torch_utils import get_module_execution_device
    except ImportError:  # diffusers < 0.42
        return next(module.parameters()).device
    return get_module_execution_device(module)


def _resolve_source(id_or_dir: str) -> str:
    """A local folder (made absolute) or a hub id; a path-like string that does not exist is an error."""
    expanded = os.path.expanduser(id_or_dir)
    if os.path.exists(expanded):
        if not os.path.isdir(expanded):
            raise NotADirectoryError(f"painter {id_or_dir!r} is a file; expected a diffusers folder or a hub id")
        if not os.path.isfile(os.path.join(expanded, "model_index.json")):
            raise FileNotFoundError(
                f"painter folder {id_or_dir!r} has no model_index.json: not a diffusers pipeline folder "
                "(expected the layout of black-forest-labs/FLUX.1-dev)"
            )
        return os.path.abspath(expanded)
    looks_like_path = id_or_dir.startswith(("/", ".", "~")) or id_or_dir.count("/") > 1 or os.sep + os.sep in id_or_dir
    if looks_like_path or not id_or_dir.strip():
        raise FileNotFoundError(f"painter folder {id_or_dir!r} does not exist")
    return id_or_dir
