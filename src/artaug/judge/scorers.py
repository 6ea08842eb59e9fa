"""Scorers the judge can run: one signature, ``score(images, prompts) -> list[float]``, higher is better.

- :class:`AestheticScorer`: the LAION aesthetic predictor v2 ("improved-aesthetic-predictor", C. Schuhmann 2022):
  an MLP on L2-normalised CLIP ViT-L/14 image embeddings, trained on SAC + LAION-Logos + AVA ratings (1-10 scale).
- :class:`ClipAlignmentScorer`: CLIPScore without the rescaling (Hessel et al. 2021, "CLIPScore"), i.e.
  ``100 * max(cos(image, text), 0)`` as in torchmetrics.
- :class:`PairwiseVLMJudge`: the critic VLM itself asked "A or B?" about a (before, after) pair, in both orders so
  that a judge who always names the first (or second) image says nothing (Zheng et al. 2023, "Judging
  LLM-as-a-judge", position bias).

Real weights come from a hub id or a local folder through ``from_pretrained``; tests use the tiny CLIP of
``artaug.tiny.clip`` and a random head saved in the published head's format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn

from artaug.config import DEFAULT_AESTHETIC_HEAD, DEFAULT_CLIP

if TYPE_CHECKING:
    from PIL import Image

    from artaug.critic import Critic


class Scorer(Protocol):
    """Anything that scores (image, prompt) pairs; higher is better. ``name`` keys its scores in a verdict."""

    name: str

    def score(self, images: list[Image.Image], prompts: list[str]) -> list[float]: ...


# ---------------------------------------------------------------------------------------------------- CLIP loading


@dataclass
class ClipBundle:
    """A CLIP model with its processor, loaded once and shared by every scorer that needs it."""

    model: nn.Module
    processor: object
    source: str

    @classmethod
    def from_pretrained(
        cls,
        id_or_dir: str | Path = DEFAULT_CLIP,
        device: str | torch.device = "auto",
        dtype: torch.dtype | None = None,
    ) -> ClipBundle:
        """Load ``transformers.CLIPModel`` + ``CLIPProcessor`` from a hub id or a saved folder.

        ``device`` "auto" follows ``artaug.devices``; ``dtype`` defaults to float16 on CUDA and float32 elsewhere.
        """
        from transformers import CLIPModel, CLIPProcessor

        from artaug.devices import resolve_device

        device = torch.device(device if isinstance(device, torch.device) else resolve_device(device))
        dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
        model = CLIPModel.from_pretrained(id_or_dir, dtype=dtype).to(device).eval()
        processor = CLIPProcessor.from_pretrained(id_or_dir)
        return cls(model=model, processor=processor, source=str(id_or_dir))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @torch.no_grad()
    def image_embeddings(self, images: list[Image.Image]) -> torch.Tensor:
        """L2-normalised projected image embeddings, float32, shape ``(len(images), projection_dim)``."""
        inputs = self.processor(images=[image.convert("RGB") for image in images], return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, self.dtype)
        return _unit(_features(self.model.get_image_features(pixel_values=pixels)))

    @torch.no_grad()
    def text_embeddings(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised projected text embeddings; texts longer than CLIP's 77 tokens are truncated (as CLIP was
        trained)."""
        inputs = self.processor(text=texts, padding=True, truncation=True, max_length=77, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
        return _unit(_features(self.model.get_text_features(**inputs)))


def _features(output: torch.Tensor | object) -> torch.Tensor:
    # transformers < 5 returns the projected tensor; 5.x returns an output whose pooler_output is projected.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _unit(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(x.float(), dim=-1)


def _check_batch(images: list[Image.Image], prompts: list[str]) -> None:
    if len(images) != len(prompts):
        raise ValueError(f"score needs one prompt per image, got {len(images)} images and {len(prompts)} prompts")


def _batches(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


# ---------------------------------------------------------------------------------------------------- aesthetic


class AestheticHead(nn.Module):
    """The LAION aesthetic predictor v2 MLP, in the published module layout.

    ``layers`` is ``Linear(d, 1024), Dropout, Linear(1024, 128), Dropout, Linear(128, 64), Dropout, Linear(64, 16),
    Linear(16, 1)`` with no activations (the "linearMSE" heads), so the published state dict's keys
    ``layers.{0,2,4,6,7}.{weight,bias}`` load as they are. ``d`` is 768 for CLIP ViT-L/14.
    """

    HIDDEN = (1024, 128, 64, 16)

    def __init__(self, input_size: int = 768) -> None:
        super().__init__()
        h1, h2, h3, h4 = self.HIDDEN
        self.layers = nn.Sequential(
            nn.Linear(input_size, h1),
            nn.Dropout(0.2),
            nn.Linear(h1, h2),
            nn.Dropout(0.2),
            nn.Linear(h2, h3),
            nn.Dropout(0.1),
            nn.Linear(h3, h4),
            nn.Linear(h4, 1),
        )

    @property
    def input_size(self) -> int:
        return self.layers[0].in_features

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.layers(embeddings).squeeze(-1)

    @classmethod
    def load(cls, path_or_hub_file: str | Path) -> AestheticHead:
        """Load a head from a local ``.pth`` / ``.safetensors`` state dict, or ``"owner/repo/file"`` on the hub."""
        path = _resolve_file(path_or_hub_file)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            # The published file is a plain state dict of tensors: no pickled code needs to run.
            state = torch.load(path, map_location="cpu", weights_only=True)
        if "layers.0.weight" not in state:
            raise ValueError(
                f"{path} is not a LAION aesthetic head: expected keys layers.{{0,2,4,6,7}}.{{weight,bias}}, "
                f"got {sorted(state)[:6]}"
            )
        head = cls(input_size=state["layers.0.weight"].shape[1])
        head.load_state_dict(state)
        return head.eval()

    def save(self, path: str | Path) -> Path:
        """Save in the published format (a ``torch.save``'d state dict), or as safetensors for a ``.safetensors``
        path."""
        path = Path(path)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, path)
        else:
            torch.save(state, path)
        return path


def _resolve_file(path_or_hub_file: str | Path) -> Path:
    path = Path(path_or_hub_file)
    if path.is_file():
        return path
    parts = str(path_or_hub_file).split("/")
    if len(parts) < 3 or path.is_absolute() or str(path_or_hub_file).startswith("."):
        raise FileNotFoundError(f"no such file: {path_or_hub_file} (nor a hub file of the form 'owner/repo/file')")
    from huggingface_hub import hf_hub_download

    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except Exception as error:  # offline, unknown repo, missing file: one message naming both readings
        raise FileNotFoundError(
            f"{path_or_hub_file} is neither a local file nor downloadable as {filename!r} from hub repo {repo_id!r}: "
            f"{type(error).__name__}: {error}"
        ) from error


class AestheticScorer:
    """LAION aesthetic predictor v2: ``head(normalise(clip.image_embedding))``, about 1-10 on real images."""

    name = "aesthetic"

    def __init__(self, clip: ClipBundle, head: AestheticHead, batch_size: int = 8) -> None:
        projection_dim = clip.model.config.projection_dim
        if projection_dim != head.input_size:
            raise ValueError(
                f"aesthetic head takes {head.input_size}-d embeddings but {clip.source} makes {projection_dim}-d ones "
                "(the published heads need CLIP ViT-L/14)"
            )
        self.clip = clip
        self.head = head.to(clip.device, torch.float32).eval()
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(
        cls,
        clip_id_or_dir: str | Path = DEFAULT_CLIP,
        head: str | Path = DEFAULT_AESTHETIC_HEAD,
        device: str | torch.device = "auto",
        dtype: torch.dtype | None = None,
        clip: ClipBundle | None = None,
    ) -> AestheticScorer:
        """Load CLIP (or reuse ``clip``, already loaded for another scorer) and the head."""
        clip = clip or ClipBundle.from_pretrained(clip_id_or_dir, device=device, dtype=dtype)
        return cls(clip, AestheticHead.load(head))

    @torch.no_grad()
    def score(self, images: list[Image.Image], prompts: list[str]) -> list[float]:
        """Aesthetic score per image; ``prompts`` only have to match in number (the predictor ignores text)."""
        _check_batch(images, prompts)
        scores: list[float] = []
        for batch in _batches(len(images), self.batch_size):
            scores += self.head(self.clip.image_embeddings(images[batch])).tolist()
        return scores


# ---------------------------------------------------------------------------------------------------- alignment


class ClipAlignmentScorer:
    """Prompt alignment: ``100 * max(cos(clip_image, clip_text), 0)``; around 30-35 for a well-aligned real image."""

    name = "alignment"

    def __init__(self, clip: ClipBundle, batch_size: int = 8) -> None:
        self.clip = clip
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(
        cls,
        id_or_dir: str | Path = DEFAULT_CLIP,
        device: str | torch.device = "auto",
        dtype: torch.dtype | None = None,
        clip: ClipBundle | None = None,
    ) -> ClipAlignmentScorer:
        return cls(clip or ClipBundle.from_pretrained(id_or_dir, device=device, dtype=dtype))

    @torch.no_grad()
    def score(self, images: list[Image.Image], prompts: list[str]) -> list[float]:
        _check_batch(images, prompts)
        scores: list[float] = []
        for batch in _batches(len(images), self.batch_size):
            cosine = (self.clip.image_embeddings(images[batch]) * self.clip.text_embeddings(prompts[batch])).sum(-1)
            scores += (100.0 * cosine.clamp(min=0.0)).tolist()
        return scores


# ---------------------------------------------------------------------------------------------------- pairwise

PAIRWISE_TEMPLATE = (
    'Two paintings were made for the prompt: "{prompt}".\n'
    "Image A is the first image, image B is the second.\n"
    "Which painting is better overall: more beautiful, more faithful to the prompt, with fewer flaws?\n"
    "Answer with a single letter: A or B."
)


@dataclass
class PairwiseResult:
    """Both orders of one pairwise question: the answers, how each was read, and the preference for ``after``."""

    preference: float
    answers: list[str] = field(default_factory=list)
    choices: list[str | None] = field(default_factory=list)

    @property
    def unparsed(self) -> list[str]:
        """The answers that named neither A nor B (each counted as 0.5)."""
        return [answer for answer, choice in zip(self.answers, self.choices, strict=True) if choice is None]


class PairwiseVLMJudge:
    """The critic as a pairwise judge: the probability that ``after`` is better than ``before``.

    The question is asked twice, once with ``before`` as image A and once with ``after`` as image A; each answer
    gives 1 (after wins), 0 (before wins) or 0.5 (unparseable), and the preference is their mean. A judge that
    always says "A" therefore scores exactly 0.5: position bias cancels instead of deciding.
    """

    name = "pairwise"

    def __init__(self, critic: Critic, max_new_tokens: int = 8, template: str = PAIRWISE_TEMPLATE) -> None:
        if not callable(getattr(critic, "ask", None)):
            raise TypeError(
                f"the pairwise judge needs a critic with an ask(images, text, max_new_tokens) method, got {critic!r}"
            )
        self.critic = critic
        self.max_new_tokens = max_new_tokens
        self.template = template
        self.history: list[PairwiseResult] = []

    def prefer(self, before: Image.Image, after: Image.Image, prompt: str) -> float:
        """Probability in ``[0, 1]`` that ``after`` is the better painting; the details land in ``history``.

        A failing critic (its ``CriticError``) propagates: the caller decides whether the round is skipped.
        """
        return self.judge(before, after, prompt).preference

    def judge(self, before: Image.Image, after: Image.Image, prompt: str) -> PairwiseResult:
        question = self.template.format(prompt=prompt)
        answers, choices, votes = [], [], []
        # The letter that means "after wins" is B in the first order and A in the second.
        for images, after_letter in (([before, after], "B"), ([after, before], "A")):
            answer = self.critic.ask(images, question, max_new_tokens=self.max_new_tokens)
            choice = parse_choice(answer)
            answers.append(answer)
            choices.append(choice)
            votes.append(0.5 if choice is None else float(choice == after_letter))
        result = PairwiseResult(preference=sum(votes) / len(votes), answers=answers, choices=choices)
        self.history.append(result)
        return result


# The letters themselves are matched case-sensitively: a leading lowercase "a" is an article, not a vote.
_LEADING_LETTER = re.compile(r"^\W*(?:(?i:answer)\s*:?\s*)?([AB])\b(?!\s+(?i:or|and)\b)")
_NAMED_IMAGE = re.compile(r"\b(?i:image|painting|picture|option)\s+([AB])\b")
_BARE_LETTER = re.compile(r"\b([AB])\b")


def parse_choice(answer: str) -> str | None:
    """``"A"``, ``"B"`` or ``None`` from a judge's free text. Ambiguous answers (naming both) are ``None``.

    Tried in order: a leading letter ("B", "B.", "(A)", "Answer: A", but not "A or B"); then the images named in the
    text ("Image B is better", "I prefer image A"); then capital letters standing alone ("The better one is B").
    """
    text = answer.strip()
    if match := _LEADING_LETTER.match(text):
        return match.group(1).upper()
    for pattern in (_NAMED_IMAGE, _BARE_LETTER):
        letters = {letter.upper() for letter in pattern.findall(text)}
        if len(letters) == 1:
            return letters.pop()
        if len(letters) > 1:
            return None
    return None
