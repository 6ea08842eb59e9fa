"""A critic behind any OpenAI-compatible chat endpoint, through the ``openai`` SDK.

Endpoints it is meant for (``base_url`` and a model name; the key comes from the environment variable named by
``api_key_env``, ``OPENAI_API_KEY`` unless told otherwise; local servers accept any key):

- vLLM: ``vllm serve Qwen/Qwen2.5-VL-7B-Instruct`` →
  ``RemoteCritic("http://HOST:8000/v1", "Qwen/Qwen2.5-VL-7B-Instruct", convention="qwen2.5-vl")``
- SGLang: ``python -m sglang.launch_server --model-path Qwen/Qwen2-VL-7B-Instruct`` →
  ``RemoteCritic("http://HOST:30000/v1", "Qwen/Qwen2-VL-7B-Instruct")``
- LMDeploy: ``lmdeploy serve api_server Qwen/Qwen2-VL-7B-Instruct`` →
  ``RemoteCritic("http://HOST:23333/v1", "Qwen/Qwen2-VL-7B-Instruct")``
- DashScope (Alibaba Cloud Model Studio): ``RemoteCritic("https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
  "qwen-vl-max", api_key_env="DASHSCOPE_API_KEY")``
- OpenAI: ``RemoteCritic("https://api.openai.com/v1", "gpt-4o")``
- transformers (what the tests use): ``transformers serve FOLDER --port 8000`` →
  ``RemoteCritic("http://127.0.0.1:8000/v1", "FOLDER")``

Servers strip special tokens from answers, so Qwen2-VL's grounding tokens do not survive them: the default template
asks for plain JSON, and structured output (``response_format`` with a JSON schema) is requested when the server
accepts it. Images travel as base64 PNG data URLs; the size actually sent is recorded as ``processed_size`` (for
pixel conventions the image is snapped to multiples of 28 px, which Qwen2.5-VL's processor keeps as they are).
Failures after bounded retries become an empty ``Critique`` with ``.error`` set; the API key never appears in
errors, logs or reprs.

An endpoint is an outsider: each request is bounded in *total* time (``timeout`` covers connecting, waiting and
reading, so a server that trickles one byte a second cannot hold a job), and the response body in size.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

from PIL import Image

from artaug.config import CriticConfig
from artaug.critic.base import Critic, CriticError

try:  # the HTTP library of the installed openai SDK: httpx2 in openai >= 3, httpx before
    import httpx2 as httpx
except ImportError:
    import httpx
from artaug.critic.prompts import Template, response_schema
from artaug.types import Critique

logger = logging.getLogger(__name__)

QWEN_FACTOR = 28  # 14 px patches merged 2x2: Qwen2-VL/2.5-VL processors resize to multiples of this
DEFAULT_MAX_PIXELS = 1280 * QWEN_FACTOR * QWEN_FACTOR  # Qwen2.5-VL's usual serving budget (~1 MP)
MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # a chat completion of a few hundred tokens is kilobytes
_DEFAULTS = CriticConfig()


class RemoteCritic(Critic):
    """A VLM critic behind an OpenAI-compatible ``/v1/chat/completions`` endpoint."""

    name = "remote"

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key_env: str = _DEFAULTS.api_key_env,
        timeout: float = _DEFAULTS.timeout,
        max_retries: int = _DEFAULTS.max_retries,
        backoff: float = 1.0,
        template: str | Template = "json",
        max_edits: int = _DEFAULTS.max_edits,
        max_new_tokens: int = _DEFAULTS.max_new_tokens,
        convention: str = "auto",
        structured: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        temperature: float = 0.0,
        concurrency: int = 1,
    ) -> None:
        import openai

        # 1. Invalid configuration is the caller's bug: say so now, not at the first painting.
        _check_url(base_url)
        if not isinstance(api_key_env, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", api_key_env):
            raise ValueError(f"api_key_env must name an environment variable, got {api_key_env!r}")
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or not 0 <= max_retries <= 20:
            raise ValueError(f"max_retries must be an int in [0, 20], got {max_retries!r}")
        if backoff < 0 or max_new_tokens < 1 or max_pixels < QWEN_FACTOR * QWEN_FACTOR or concurrency < 1:
            raise ValueError("backoff must be >= 0, max_new_tokens >= 1, max_pixels >= 784 and concurrency >= 1")
        if model is not None and (not isinstance(model, str) or not model.strip()):
            raise ValueError(f"model must be a non-empty name or None (ask the server), got {model!r}")
        super().__init__(model_id=model or "", template=template, max_edits=max_edits, convention=convention)

        # 2. The SDK client; our own retry loop (below) records and bounds the retries, so the SDK's is off.
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self._secret = os.environ.get(api_key_env, "")
        # Local servers ignore the key, but the SDK insists on one. The transport bounds the body and the total time.
        http = httpx.Client(transport=_BoundedTransport(httpx.HTTPTransport(), MAX_RESPONSE_BYTES), timeout=timeout)
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=self._secret or "not-needed",
            timeout=timeout,
            max_retries=0,
            http_client=http,
        )
        self.timeout, self.max_retries, self.backoff = float(timeout), max_retries, float(backoff)
        self.max_new_tokens, self.max_pixels, self.temperature = max_new_tokens, max_pixels, temperature
        self.structured = structured and self.template.form == "json"
        self.concurrency = concurrency

    # --- the public surface ------------------------------------------------------------------------------------------

    def ask(self, images: list[Image.Image], text: str, max_new_tokens: int = 256) -> str:
        return self._complete(list(images), text, max_new_tokens, structured=False)[0]

    def critique_batch(self, images: list[Image.Image], prompts: list[str]) -> list[Critique]:
        self._check_batch(images, prompts)
        if self.concurrency == 1 or len(images) == 1:
            return [self._critique_one(image, prompt) for image, prompt in zip(images, prompts, strict=True)]
        # Opt-in: servers such as vLLM batch concurrent requests, so a few in flight raise throughput.
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._critique_one, images, prompts))

    def _critique_one(self, image: Image.Image, prompt: str) -> Critique:
        started = time.perf_counter()
        sent_size = self.send_size(*image.size)
        try:
            answer, sizes = self._complete([image], self.instruction(prompt), self.max_new_tokens, self.structured)
        except CriticError as exc:
            return self._critique_from("", image, sent_size, started, error=str(exc))
        return self._critique_from(answer, image, sizes[0], started)

    def send_size(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) an image is sent at: at most ``max_pixels``; multiples of 28 for pixel conventions."""
        scale = min(1.0, math.sqrt(self.max_pixels / (width * height)))
        if not self.pixels:
            return max(1, round(width * scale)), max(1, round(height * scale))
        w = max(QWEN_FACTOR, math.floor(width * scale / QWEN_FACTOR + 0.5) * QWEN_FACTOR)
        h = max(QWEN_FACTOR, math.floor(height * scale / QWEN_FACTOR + 0.5) * QWEN_FACTOR)
        while w * h > self.max_pixels and max(w, h) > QWEN_FACTOR:  # rounding up may overshoot the budget
            w, h = (w - QWEN_FACTOR, h) if w >= h else (w, h - QWEN_FACTOR)
        return w, h

    # --- transport ---------------------------------------------------------------------------------------------------

    def _complete(
        self, images: list[Image.Image], text: str, max_new_tokens: int, structured: bool
    ) -> tuple[str, list[tuple[int, int]]]:
        """One chat completion with bounded retries; the answer text and the size each image was sent at."""
        import openai

        sizes = [self.send_size(*image.size) for image in images]
        content: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": _data_url(image, size)}}
            for image, size in zip(images, sizes, strict=True)
        ]
        content.append({"type": "text", "text": text})
        request: dict[str, Any] = {
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_new_tokens,
            "temperature": self.temperature,
        }
        last_error, attempt = "no attempt made", 0
        while attempt <= self.max_retries:
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            attempt += 1
            try:
                if structured:
                    schema = response_schema(self.max_edits)
                    request["response_format"] = {"type": "json_schema", "json_schema": schema}
                response = _within(self.timeout, lambda: self._create(request))
                return _answer_text(response), sizes
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                if not (structured and "response_format" in request):
                    raise CriticError(self._redact(f"the endpoint rejected the request: {_describe(exc)}")) from None
                # The server does not do structured output: ask again for plain text at once (not a retry), and
                # remember for the next requests.
                logger.info("endpoint %s rejected response_format; asking for plain text", self.base_url)
                structured = self.structured = False
                request.pop("response_format", None)
                attempt -= 1
            except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError, TimeoutError) as exc:
                last_error = _describe(exc)  # 429, 5xx, refused connection, timeout: worth another try
                logger.warning("critic endpoint attempt %d failed: %s", attempt, self._redact(last_error))
            except openai.APIStatusError as exc:  # 401, 403, 404...: retrying will not help
                raise CriticError(self._redact(f"the endpoint refused: {_describe(exc)}")) from None
            except (openai.APIError, httpx.HTTPError, ValueError, TypeError, AttributeError, RecursionError) as exc:
                # a 200 with garbage in it, or a body over the size limit
                last_error = f"unusable response ({type(exc).__name__}: {exc})"
                logger.warning("critic endpoint attempt %d: %s", attempt, self._redact(last_error))
        raise CriticError(self._redact(f"{self.base_url} failed after {attempt} attempt(s): {last_error}"))

    def _create(self, request: dict[str, Any]) -> Any:
        request["model"] = self._model_name()
        return self._client.chat.completions.create(**request)

    def _model_name(self) -> str:
        """The configured model, or the first one the server lists (asked once)."""
        if not self.model_id:
            models = list(self._client.models.list())
            if not models:
                raise ValueError("the endpoint lists no models; pass model=...")
            self.model_id = models[0].id
        return self.model_id

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def __repr__(self) -> str:
        return (
            f"RemoteCritic(base_url={self.base_url!r}, model={self.model_id!r}, api_key_env={self.api_key_env!r}, "
            f"template={self.template_version!r})"
        )


class _BoundedTransport(httpx.BaseTransport):
    """An httpx transport whose response bodies stop at ``max_bytes`` and at the calling thread's deadline."""

    def __init__(self, inner: httpx.BaseTransport, max_bytes: int) -> None:
        self.inner, self.max_bytes = inner, max_bytes

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.stream = _BoundedStream(response.stream, self.max_bytes, getattr(_deadline, "at", None))
        return response

    def close(self) -> None:
        self.inner.close()


class _BoundedStream(httpx.SyncByteStream):
    def __init__(self, inner: Any, max_bytes: int, deadline: float | None) -> None:
        self.inner, self.max_bytes, self.deadline = inner, max_bytes, deadline

    def __iter__(self):
        received = 0
        for chunk in self.inner:
            received += len(chunk)
            if received > self.max_bytes:
                raise httpx.ReadError(f"response body larger than {self.max_bytes:,} bytes")
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise httpx.ReadTimeout("the response did not finish within the total time limit")
            yield chunk

    def close(self) -> None:
        self.inner.close()


_deadline = threading.local()


def _within(seconds: float, call: Callable[[], Any]) -> Any:
    """``call()`` in a worker thread, abandoned with ``TimeoutError`` after ``seconds`` in all.

    httpx's timeouts bound each read, not the whole response, so a server that trickles bytes would never time out.
    The abandoned thread's response stream sees the same deadline and stops at its next chunk.
    """
    outcome: dict[str, Any] = {}
    done = threading.Event()
    deadline = time.monotonic() + seconds

    def work() -> None:
        _deadline.at = deadline
        try:
            outcome["value"] = call()
        except BaseException as error:  # handed to the caller's thread below
            outcome["error"] = error
        finally:
            done.set()

    threading.Thread(target=work, name="artaug-critic-request", daemon=True).start()
    if not done.wait(seconds):
        raise TimeoutError(f"no complete answer within the {seconds:g} s total time limit")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _check_url(base_url: Any) -> None:
    parsed = urlparse(base_url) if isinstance(base_url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"base_url must be an http(s) URL like http://127.0.0.1:8000/v1, got {base_url!r}")
    if parsed.username or parsed.password:
        raise ValueError("put credentials in the environment variable named by api_key_env, not in base_url")


def _data_url(image: Image.Image, size: tuple[int, int]) -> str:
    image = image.convert("RGB")
    if image.size != size:
        image = image.resize(size, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _answer_text(response: Any) -> str:
    """The first choice's text; servers that answer with structured parts or nothing are handled, not trusted."""
    if isinstance(response, str):  # some servers answer 200 with a non-JSON body, which the SDK hands back as is
        raise ValueError(f"response is not a chat completion: {response[:120]!r}")
    choices = getattr(response, "choices", None) or []
    if not choices:
        raise ValueError("response has no choices")
    content = choices[0].message.content
    if isinstance(content, list):  # content parts
        content = "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    if not isinstance(content, str):
        raise ValueError(f"response content is {type(content).__name__}, not text")
    return content


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    message = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    cause = exc.__cause__  # the SDK wraps transport errors ("Connection error."): say what actually happened
    if cause is not None and str(cause) and str(cause) not in message:
        message += f" ({type(cause).__name__}: {str(cause).splitlines()[0][:200]})"
    return f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "") + f": {message}"
