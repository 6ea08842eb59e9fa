"""VQAScore with a Qwen-family VLM: the probability that the model answers "Yes" to "Does this figure show
"{prompt}"? Please answer yes or no." (Lin et al. 2024, "Evaluating Text-to-Visual Generation with Image-to-Text
Generation"; the paper's best model is CLIP-FlanT5, any VLM that answers yes/no fits the definition).

Three ways to ask, and every score says which one it took (``detail["method"]``):

- ``local`` (``LocalCritic``, in this process): P("Yes") exactly, by teacher forcing: the chat-formatted question
  with the image, followed by the tokens of ``Yes``; the score is ``exp(sum log p(answer token | everything before))``
  (one forward pass; the answer may be several tokens, as in a tiny tokenizer).
- ``logprobs`` (``RemoteCritic`` behind an OpenAI-compatible endpoint that returns ``top_logprobs``): the sum of
  ``exp(logprob)`` over the first answer token's top alternatives that read "yes" in any case or spacing (servers
  tokenize " Yes" and "Yes" apart). A "yes" outside the top 20 counts as 0.
- ``parsed`` (an endpoint that gives no log-probabilities, or refuses the request for them): the answer text itself,
  1.0 for yes and 0.0 for no; an answer that is neither is a recorded failure, never a guess.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from artaug.config import DEFAULT_VQA_QUESTION, EvalConfig
from artaug.critic.base import CriticError
from artaug.critic.remote import RemoteCritic
from artaug.eval.metrics import Result, Sample

if TYPE_CHECKING:
    from PIL import Image

    from artaug.critic.local import LocalCritic

ANSWER = "Yes"
TOP_LOGPROBS = 20  # the most alternatives OpenAI's API lets a request ask for


class VQAScore:
    """VQAScore over a ``LocalCritic`` or a ``LogprobCritic`` (see the module docstring)."""

    name = "vqascore"

    def __init__(self, critic: LocalCritic | LogprobCritic, question: str = DEFAULT_VQA_QUESTION) -> None:
        if "{prompt}" not in question:
            raise ValueError(f"the VQAScore question must contain {{prompt}}, got {question!r}")
        self.critic, self.question = critic, question

    @classmethod
    def from_config(cls, config: EvalConfig) -> VQAScore:
        """An endpoint for a URL (``eval.vqa_served_model`` names the model), else a hub id or folder in process."""
        from artaug.critic import is_url

        if is_url(config.vqa_model):
            return cls(LogprobCritic(config.vqa_model, config.vqa_served_model or None), config.vqa_question)
        from artaug.critic.local import LocalCritic

        return cls(LocalCritic.from_pretrained(config.vqa_model, device=config.device), config.vqa_question)

    def score(self, samples: list[Sample]) -> list[Result]:
        results = []
        for sample in samples:
            question = self.question.replace("{prompt}", sample.prompt)
            if isinstance(self.critic, LogprobCritic):
                value, method = self.critic.yes_probability(sample.image, question)
            else:
                value, method = local_yes_probability(self.critic, sample.image, question), "local"
            results.append(Result(value, {"method": method}))
        return results


def local_yes_probability(critic: LocalCritic, image: Image.Image, question: str, answer: str = ANSWER) -> float:
    """P(``answer`` | image, question) under the critic's model, by teacher forcing (see the module docstring)."""
    import torch

    # 1. The question as the model's chat template writes it, ready for the assistant's answer.
    processor, model = critic.processor, critic.model
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], images=[image.convert("RGB")], return_tensors="pt").to(critic.device)

    # 2. Append the answer's tokens and read each one's probability at the position before it.
    answer_ids = torch.tensor([processor.tokenizer(answer, add_special_tokens=False).input_ids], device=critic.device)
    length = inputs["input_ids"].shape[1]
    extend_tokens(inputs, answer_ids)
    with torch.inference_mode():
        logits = model(**inputs).logits[0, length - 1 : -1].float()
    log_probs = torch.log_softmax(logits, dim=-1).gather(-1, answer_ids[0, :, None])
    return float(log_probs.sum().exp())


def extend_tokens(inputs: Any, tokens: Any) -> None:
    """Append text ``tokens`` (shape (1, n)) to processor ``inputs``: every per-token tensor grows with them
    (``attention_mask`` with ones, others such as ``mm_token_type_ids`` with 0, the text type)."""
    import torch

    length = inputs["input_ids"].shape[1]
    for key, value in list(inputs.items()):
        if isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape == (1, length):
            fill = tokens if key == "input_ids" else torch.full_like(tokens, int(key == "attention_mask"))
            inputs[key] = torch.cat([value, fill.to(value.dtype)], dim=1)


class LogprobCritic(RemoteCritic):
    """A ``RemoteCritic`` that asks for the first answer token's log-probabilities as well.

    Transport, retries, time and size bounds are the ``RemoteCritic``'s own; this class only adds ``logprobs`` to
    its requests and keeps the last response to read them. A server that refuses them is asked without, from then on.
    """

    name = "remote-logprobs"

    def __init__(self, base_url: str, model: str | None = None, **options: Any) -> None:
        super().__init__(base_url, model, template="json", **options)
        self.logprobs = True
        self._response: Any = None

    def _create(self, request: dict[str, Any]) -> Any:
        if self.logprobs:
            request |= {"logprobs": True, "top_logprobs": TOP_LOGPROBS}
        else:
            request.pop("logprobs", None)
            request.pop("top_logprobs", None)
        self._response = super()._create(request)
        return self._response

    def yes_probability(self, image: Image.Image, question: str) -> tuple[float, str]:
        """``(P("yes"), method)``: ``logprobs`` when the server gave them, else ``parsed`` from the answer."""
        self._response = None
        try:
            answer = self.ask([image], question, max_new_tokens=4)
        except CriticError as error:
            if not (self.logprobs and "rejected the request" in str(error)):
                raise
            self.logprobs = False  # the server does not do logprobs: ask plainly from now on
            answer = self.ask([image], question, max_new_tokens=4)
        top = _first_token_alternatives(self._response)
        if top is not None:
            return sum(math.exp(lp) for token, lp in top if token.strip().lower() == "yes"), "logprobs"
        return parse_yes_no(answer), "parsed"


def _first_token_alternatives(response: Any) -> list[tuple[str, float]] | None:
    """``[(token, logprob), ...]`` of the first generated token, or None when the response carries none."""
    try:
        first = response.choices[0].logprobs.content[0]
        alternatives = [(str(t.token), float(t.logprob)) for t in first.top_logprobs or []]
        alternatives = alternatives or [(str(first.token), float(first.logprob))]
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    return alternatives if all(math.isfinite(lp) and lp <= 0 for _, lp in alternatives) else None


def parse_yes_no(answer: str) -> float:
    """1.0 for an answer that starts with yes, 0.0 for no; ``ValueError`` for anything else."""
    word = answer.strip().lstrip("\"'*(").lower()
    if word.startswith("yes"):
        return 1.0
    if word.startswith("no"):
        return 0.0
    raise ValueError(f"the VLM answered neither yes nor no: {answer[:80]!r}")
