"""The painter's family-independent half: the linear ``paint`` and everything around it.

``BasePainter.paint`` follows the numbered steps of diffusers' text-to-image pipelines (check -> encode -> latents ->
timesteps -> denoise -> decode) using the wrapped pipeline's own pieces; only the denoising loop is written here,
because regional control changes what each step predicts. A painter *family* (``FluxPainter``, ``QwenImagePainter``)
is a subclass that says how its pipeline encodes prompts, draws and packs latents, calls its transformer once,
decodes and encodes images, and installs regional attention (the hooks at the end of the class). Without edits the
loop is step for step the family pipeline's own, so the image is pixel-identical to it for the same seed.

Regional modes (see ``artaug.painter.regions``):

* ``blend`` -- ArtAug's partition formula: the global prompt and every local prompt are predicted in one batched
  transformer call per step (1 + N sequences) and mixed by their box masks.
* ``attention`` -- one pass per step: local prompts' text tokens join the joint attention sequence and a mask
  restricts text<->image attention to each box (``painter.attention_impl``: ``lse``, ``grouped`` or ``mask``, the
  reference). ``Edit.weight`` (``s_i``) multiplies the attention an image token in the box pays its local prompt
  (``regions.joint_attention_bias``). The mask is hard (every token a box touches), so ``blur_sigma`` applies to
  blend mode only.
"""

from __future__ import annotations

import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch

from artaug.config import ATTENTION_IMPLS
from artaug.painter import regions
from artaug.painter.editor import InstructionEditor
from artaug.painter.loading import AttentionImpl, PainterLoading
from artaug.painter.requests import check_request, out_of_memory_hint, region_bucket, region_masks, start_index
from artaug.types import Cost, Painting, PaintRequest

logger = logging.getLogger(__name__)

# A prompt's encoding as the family's transformer takes it; the first tensor is always the (1, L, D) sequence.
Prompt = tuple[Any, ...]
_PROMPT_CACHE_SIZE = 16


class BasePainter(PainterLoading, ABC):
    """Paints ``PaintRequest``s with a diffusers pipeline of one family; see the module docstring. Loading, the
    ``[painter]`` section's extras and LoRAs are ``PainterLoading``'s (``loading.py``).

    ``max_batch`` caps how many prompt sequences one transformer call carries in blend mode (None: all 1 + N at
    once; on out-of-memory the batch is halved and a warning logged). ``attention_impl`` picks how attention mode
    applies its mask (``AttentionImpl``; all compute the same attention). ``cache_prompts`` keeps the last few prompt
    encodings (the loop repaints the same global prompt every round); encoders are deterministic, so this is exact,
    and the cache is cleared whenever LoRAs change through this class. Call ``clear_prompt_cache()`` after changing
    ``pipe``'s text encoders by hand.
    """

    def __init__(
        self,
        pipe: Any,
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
        self._prompt_cache: OrderedDict[tuple, Prompt] = OrderedDict()
        self._lora_scales: dict[str, float] = {}
        self._fused = False
        self._compiled: Any = None  # the one attention processor of a compiled transformer
        self.memory = "none"  # the memory preset it was loaded with (``painter.memory``), for the out-of-memory hint
        self.editor: InstructionEditor | None = None  # ``painter.editor``: revisions by instruction (``edit``)

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
        prompt = self._encode(request.prompt, request.max_sequence_length, device)

        # 3. The seed's noise, drawn exactly as the family's pipeline draws it, and the image tokens' positions
        generator = torch.Generator("cpu").manual_seed(request.seed)
        noise, positions = self._prepare_noise(request, prompt[0].dtype, device, generator)

        # 4. Timesteps (resolution-shifted like the pipeline) and where this painting starts in them
        timesteps = self._timesteps(request.num_inference_steps, noise.shape[1], device)
        start = start_index(len(timesteps), request.strength) if init is not None else 0
        pipe.scheduler.set_begin_index(start)
        latents = noise
        if start > 0:
            x0 = self._init_latents(init, request, noise)
            latents = pipe.scheduler.scale_noise(x0, timesteps[start : start + 1], noise)

        # 5. Regional conditioning and guidance: a function from (latents, t) to the velocity, and passes per step
        predict, passes, processors = self._conditioning(request, prompt, positions, device)
        predict, passes = self._guide(predict, passes, request, positions, device)

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

    def edit(
        self, request: PaintRequest, init: Painting, seam: int, progress: Callable[[int, int], None] | None = None
    ) -> tuple[Painting, dict[str, Any]]:
        """Revise ``init`` by instruction with the loaded editor (``InstructionEditor.revise``): ``request.edits``
        become one instruction, and outside the boxes (beyond ``seam`` pixels) the painting stays exactly as it was.
        Returns the painting and what the trail records of the fix."""
        if self.editor is None:
            raise ValueError("no instruction editor is loaded: set painter.editor (e.g. FLUX.1-Kontext-dev)")
        check_request(request, init)
        try:
            return self.editor.revise(init, request, seam, progress)
        except torch.OutOfMemoryError as error:
            raise torch.OutOfMemoryError(out_of_memory_hint(self.memory, error)) from None

    # ------------------------------------------------------------------ steps of paint()

    @torch.no_grad()
    def predict(self, request: PaintRequest, latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The velocity one denoising step of ``paint(request)`` would use at packed ``latents`` and timestep ``t``.

        For inspecting and testing regional control (e.g. that blend leaves the prediction outside every box alone).
        """
        check_request(request.replace(strength=1.0))
        device = self.pipe._execution_device
        prompt = self._encode(request.prompt, request.max_sequence_length, device)
        positions = self._image_positions(request, device, prompt[0].dtype)
        predict, passes, processors = self._conditioning(request, prompt, positions, device)
        predict, _ = self._guide(predict, passes, request, positions, device)
        with processors:
            return predict(latents.to(device, prompt[0].dtype), t.to(device))

    def _conditioning(self, request, prompt, positions, device) -> tuple[Callable, int, Any]:
        """The step's conditional velocity function, its transformer passes per step, and a context to run it in."""
        guidance = self._guidance(request.guidance_scale, device)
        if not request.edits:
            return self._plain(prompt, positions, guidance), 1, contextlib.nullcontext()
        if request.regional == "blend":
            predict, passes = self._blend(request, prompt, positions, guidance, device)
            return predict, passes, contextlib.nullcontext()
        return self._attention(request, prompt, positions, guidance, device)

    def _encode(self, prompt: str, max_sequence_length: int, device: torch.device) -> Prompt:
        """The family's encoding of one prompt, cached by prompt, length, device and the text encoder's dtype."""
        encoder = getattr(self.pipe, "text_encoder_2", None) or getattr(self.pipe, "text_encoder", None)
        key = (prompt, max_sequence_length, str(device), str(encoder.dtype) if encoder is not None else "")
        if self.cache_prompts and key in self._prompt_cache:
            self._prompt_cache.move_to_end(key)
            return self._prompt_cache[key]
        encoded = self._encode_prompt(prompt, max_sequence_length, device)
        if self.cache_prompts:
            self._prompt_cache[key] = encoded
            while len(self._prompt_cache) > _PROMPT_CACHE_SIZE:
                self._prompt_cache.popitem(last=False)
        return encoded

    def _timesteps(self, num_inference_steps: int, image_seq_len: int, device: torch.device) -> torch.Tensor:
        # FluxPipeline's and QwenImagePipeline's schedule: linear sigmas, shifted by mu for the image's token count.
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

    def _init_latents(self, init: Painting, request: PaintRequest, noise: torch.Tensor) -> torch.Tensor:
        """The clean packed latents to revise: ``init.latents`` if present, else the VAE encoding of its image."""
        if init.latents is not None:
            if init.latents.shape != noise.shape:
                raise ValueError(f"init latents {tuple(init.latents.shape)} do not match {tuple(noise.shape)}")
            return init.latents.to(noise.device, noise.dtype)
        return self.encode_image(init.image, request.height, request.width).to(noise.device, noise.dtype)

    def _plain(self, prompt, positions, guidance) -> Callable[[torch.Tensor, Any], torch.Tensor]:
        def predict(latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self._transformer(latents, t, prompt, positions, guidance)

        return predict

    def _blend(self, request, prompt, positions, guidance, device) -> tuple[Callable, int]:
        """Batched predictions of the distinct prompts among [P, P_1..P_N], mixed by ``regions.blend``.

        A local prompt equal to the global one (or to another local prompt) reuses that prediction: the formula
        gives the same result, one pass cheaper, and bit-exactly (a batched call may differ from a single one in the
        last bits).
        """
        prompts = list(dict.fromkeys([request.prompt, *(e.prompt for e in request.edits)]))
        encoded = [prompt] + [self._encode(p, request.max_sequence_length, device) for p in prompts[1:]]
        stacked = self._stack_prompts(encoded)
        which = [prompts.index(e.prompt) for e in request.edits]
        masks = region_masks(request)
        edit_weights = [e.weight for e in request.edits]

        def predict(latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            v = self._batched(latents, t, stacked, positions, guidance)
            return regions.blend(v[:1], v[which, None], masks.to(v.device), edit_weights)

        return predict, len(prompts)

    def _batched(self, latents, t, prompts, positions, guidance) -> torch.Tensor:
        total = prompts[0].shape[0]
        while True:
            size = min(self.max_batch or total, total)
            try:
                outputs = [
                    self._transformer(
                        latents.expand(min(size, total - i), -1, -1),
                        t,
                        self._take_prompts(prompts, i, i + size),
                        positions,
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

    def _attention(self, request, prompt, positions, guidance, device) -> tuple[Callable, int, Any]:
        """Single pass: region texts appended to the base text; the step function and the context that installs
        regional attention for the call.

        Each local prompt is encoded at its own token length (at most ``region_max_sequence_length``), not padded:
        padding tokens would only add work to every layer of every step.
        """
        cap = request.region_max_sequence_length
        encoded = [self._encode(e.prompt, self.local_prompt_length(e.prompt, cap), device) for e in request.edits]
        lengths = [e[0].shape[1] for e in encoded]
        # A compiled transformer sees the local prompts' tokens padded to a bucket size (invisible padding tokens).
        pad_to = region_bucket(sum(lengths)) if self._compiled is not None else sum(lengths)
        embeds = prompt[0]
        padding = embeds.new_zeros(1, pad_to - sum(lengths), embeds.shape[2])
        joint = (torch.cat([embeds, *(e[0] for e in encoded), padding], dim=1), *prompt[1:])
        masks = regions.token_masks([e.box for e in request.edits], request.height, request.width)
        weights = [e.weight for e in request.edits]
        layout = regions.regional_layout(embeds.shape[1], lengths, masks, pad_to=pad_to, weights=weights).to(device)
        context, kwargs = self._regional_attention(layout)

        def predict(latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self._transformer(latents, t, joint, positions, guidance, kwargs)

        return predict, 1, context

    def _take_prompts(self, prompts: Prompt, start: int, stop: int) -> Prompt:
        """Rows ``start:stop`` of stacked prompt encodings (a blend batch's chunk)."""
        return tuple(x[start:stop] if isinstance(x, torch.Tensor) else x for x in prompts)

    def _guide(self, predict, passes: int, request, positions, device) -> tuple[Callable, int]:
        """Wrap the conditional velocity with the family's guidance (true classifier-free guidance needs a second,
        unconditional pass); FLUX.1's guidance is distilled into the transformer, so by default nothing changes."""
        return predict, passes

    def _guidance(self, guidance_scale: float, device: torch.device) -> torch.Tensor | None:
        """The transformer's guidance-embedding input (guidance-distilled models only)."""
        if not self.pipe.transformer.config.get("guidance_embeds", False):
            return None
        return torch.full([1], guidance_scale, device=device, dtype=torch.float32)

    # ------------------------------------------------------------------ the family's hooks

    @abstractmethod
    def _encode_prompt(self, prompt: str, max_sequence_length: int, device: torch.device) -> Prompt:
        """The pipeline's own encoding of one prompt, sequence embeddings first."""

    @abstractmethod
    def local_prompt_length(self, prompt: str, cap: int) -> int:
        """Text tokens ``prompt`` takes, at most ``cap``: the length a local prompt is encoded at."""

    @abstractmethod
    def _prepare_noise(self, request: PaintRequest, dtype, device, generator) -> tuple[torch.Tensor, Any]:
        """The packed noise the pipeline draws for ``generator``, and the image tokens' positions."""

    @abstractmethod
    def _image_positions(self, request: PaintRequest, device, dtype) -> Any:
        """The image tokens' positions as the transformer takes them (FLUX's ``img_ids``, Qwen's ``img_shapes``)."""

    @abstractmethod
    def _transformer(self, latents, t, prompt, positions, guidance, kwargs=None) -> torch.Tensor:
        """One transformer call, argument for argument as the pipeline makes it."""

    @abstractmethod
    def _stack_prompts(self, prompts: list[Prompt]) -> Prompt:
        """Several prompts' encodings as one batch."""

    @abstractmethod
    def _regional_attention(self, layout: regions.RegionalLayout) -> tuple[Any, dict[str, Any]]:
        """A context that makes attention regional for one painting, and the transformer-call kwargs it needs."""

    @abstractmethod
    def _compiled_processor(self) -> Any:
        """The one attention processor a compiled transformer keeps (plain without a layout)."""

    @abstractmethod
    def encode_image(self, image: Any, height: int, width: int) -> torch.Tensor:
        """Clean packed latents of a PIL image at ``height`` x ``width`` (the VAE's mode, normalised)."""

    @abstractmethod
    def _decode(self, latents: torch.Tensor, request: PaintRequest) -> Any:
        """The PIL image of packed latents."""
