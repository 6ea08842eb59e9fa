"""The in-process critic: a Qwen-family VLM through transformers' ``AutoModelForImageTextToText`` + ``AutoProcessor``.

Answers are decoded with special tokens kept, because Qwen2-VL's grounding boxes *are* special tokens
(``<|box_start|>``...); only the chat-control tokens (``<|im_end|>``, padding) are removed before parsing. The size of
the image as the processor resized it is read back from ``image_grid_thw`` (patches of 14 px), so Qwen2.5-VL's pixel
boxes map back onto the original image exactly.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from artaug.config import DEFAULT_CRITIC, CriticConfig
from artaug.critic.base import Critic
from artaug.critic.prompts import Template
from artaug.types import Critique

_DEFAULTS = CriticConfig()
# Tokens that frame a chat turn or stand for image pixels; everything after the first end-of-turn is padding.
END_TOKENS = ("<|im_end|>", "<|endoftext|>")
CONTROL_TOKENS = (
    "<|im_start|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# model_type -> box convention of its answers, and the template it follows best.
MODEL_CONVENTIONS = {"qwen2_vl": "qwen2-vl", "qwen2_5_vl": "qwen2.5-vl", "qwen3_vl": "qwen3-vl"}


class LocalCritic(Critic):
    """A VLM critic running in this process. Build it with ``LocalCritic.from_pretrained(hub_id_or_folder)``."""

    name = "local"

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        model_id: str = "",
        template: str | Template = "auto",
        max_edits: int = _DEFAULTS.max_edits,
        max_new_tokens: int = _DEFAULTS.max_new_tokens,
        convention: str = "auto",
        batch_size: int = 4,
        park: bool = False,
    ) -> None:
        model_type = getattr(model.config, "model_type", "")
        if convention == "auto":
            convention = MODEL_CONVENTIONS.get(model_type, "auto")
        if template == "auto":  # Qwen2-VL grounds natively with box tokens; later Qwen models prefer JSON
            template = "grounding" if model_type == "qwen2_vl" else "json"
        super().__init__(model_id=model_id, template=template, max_edits=max_edits, convention=convention)
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError(f"max_new_tokens and batch_size must be >= 1, got {max_new_tokens}, {batch_size}")
        self.model = model
        self.processor = processor
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        # A parked critic waits on the CPU and visits its device only while it answers (``critic.park``).
        self.park = park
        self.run_device = next(model.parameters()).device
        if park:
            model.to("cpu")
        # Decoder-only generation needs the prompts aligned on the right: pad on the left.
        self.processor.tokenizer.padding_side = "left"
        self.patch_size = getattr(processor.image_processor, "patch_size", 14)

    @classmethod
    def from_pretrained(
        cls,
        id_or_dir: str | Path = DEFAULT_CRITIC,
        *,
        dtype: torch.dtype | str = "auto",
        device: torch.device | str = "auto",
        template: str | Template = "auto",
        max_edits: int = _DEFAULTS.max_edits,
        max_new_tokens: int = _DEFAULTS.max_new_tokens,
        convention: str = "auto",
        batch_size: int = 4,
        local_files_only: bool = False,
        park: bool = False,
    ) -> LocalCritic:
        """Load a hub id (default ``Qwen/Qwen2-VL-7B-Instruct``) or a local folder with the same layout.

        ``device`` and ``dtype`` "auto" follow ``artaug.devices`` (bfloat16 on a GPU, float32 on the CPU).
        """
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from artaug.devices import resolve_device, resolve_dtype

        source = str(id_or_dir)
        device = device if isinstance(device, torch.device) else resolve_device(device)
        dtype = dtype if isinstance(dtype, torch.dtype) else resolve_dtype(dtype, str(device))
        try:
            processor = AutoProcessor.from_pretrained(source, local_files_only=local_files_only)
            model = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype, local_files_only=local_files_only)
        except (OSError, ValueError) as exc:
            raise OSError(
                f"could not load the critic {source!r}: {exc}\nWithout access to the Hugging Face Hub, download it on "
                f"a machine that has it (`hf download {source} --local-dir FOLDER`) and pass FOLDER instead."
            ) from exc
        model = model.to(device)
        return cls(
            model.eval(),
            processor,
            model_id=source,
            template=template,
            max_edits=max_edits,
            max_new_tokens=max_new_tokens,
            convention=convention,
            batch_size=batch_size,
            park=park,
        )

    @property
    def device(self) -> torch.device:
        return self.run_device

    def ask(self, images: list[Image.Image], text: str, max_new_tokens: int = 256) -> str:
        return self._generate([(list(images), text)], max_new_tokens)[0][0]

    def critique_batch(self, images: list[Image.Image], prompts: list[str]) -> list[Critique]:
        self._check_batch(images, prompts)
        critiques = []
        for start in range(0, len(images), self.batch_size):
            end = start + self.batch_size
            chunk = list(zip(images[start:end], prompts[start:end], strict=True))
            started = time.perf_counter()
            answers = self._generate([([img], self.instruction(p)) for img, p in chunk], self.max_new_tokens)
            for (image, _), (answer, sizes) in zip(chunk, answers, strict=True):
                # Processors without image_grid_thw (non-Qwen VLMs) leave the processed size unknown.
                critiques.append(self._critique_from(answer, image, sizes[0] if sizes else None, started))
        return critiques

    def _generate(
        self, conversations: list[tuple[list[Image.Image], str]], max_new_tokens: int
    ) -> list[tuple[str, list[tuple[int, int]]]]:
        """Greedy answers to several conversations at once, with the processed (width, height) of each image."""
        # 1. Chat-format each conversation: its images first, then the text.
        texts = []
        for conv_images, text in conversations:
            content = [{"type": "image"} for _ in conv_images] + [{"type": "text", "text": text}]
            messages = [{"role": "user", "content": content}]
            texts.append(self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        images = [image.convert("RGB") for conv_images, _ in conversations for image in conv_images]

        # 2. Tokenize and resize the images the way the model was trained (the processor decides the size).
        inputs = self.processor(text=texts, images=images or None, return_tensors="pt", padding=True)
        inputs = inputs.to(self.device)
        sizes = self._processed_sizes(inputs.get("image_grid_thw"))

        # 3. Generate greedily and decode only the new tokens, keeping the grounding tokens.
        with torch.inference_mode(), self._on_device():
            output = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        answers = [_strip_control(a) for a in self.processor.batch_decode(new_tokens, skip_special_tokens=False)]

        # 4. Hand each conversation its own images' sizes.
        results, index = [], 0
        for (conv_images, _), answer in zip(conversations, answers, strict=True):
            results.append((answer, sizes[index : index + len(conv_images)]))
            index += len(conv_images)
        return results

    @contextlib.contextmanager
    def _on_device(self) -> Iterator[None]:
        """A parked critic's weights go to its device for one answer and back to the CPU after."""
        if not self.park:
            yield
            return
        self.model.to(self.run_device)
        try:
            yield
        finally:
            self.model.to("cpu")
            if self.run_device.type == "cuda":
                torch.cuda.empty_cache()

    def _processed_sizes(self, grid_thw: torch.Tensor | None) -> list[tuple[int, int]]:
        # image_grid_thw holds (frames, rows, columns) of 14 px patches per image, after the processor's resize.
        if grid_thw is None:
            return []
        return [(int(w) * self.patch_size, int(h) * self.patch_size) for _, h, w in grid_thw.tolist()]

    def __repr__(self) -> str:
        return f"LocalCritic(model_id={self.model_id!r}, template={self.template_version!r}, device={self.device})"


def _strip_control(answer: str) -> str:
    """Cut at the first end-of-turn token and drop chat-control tokens; grounding tokens stay for the parser."""
    cut = min((i for i in (answer.find(t) for t in END_TOKENS) if i >= 0), default=len(answer))
    answer = answer[:cut]
    for token in CONTROL_TOKENS:
        answer = answer.replace(token, "")
    return answer.strip()
