"""The remote critic against a real OpenAI-compatible server (``transformers serve`` with the tiny Qwen2-VL on
127.0.0.1), and against a scripted local HTTP server for the faults a real one rarely shows on demand: 500s, 429s,
slowness, garbage, oversized answers, refused structured output, a refused key. The caller never sees an exception
from ``critique``; the API key never appears in errors, logs, reprs or critiques."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from artaug.cli import main
from artaug.critic import CriticError, RemoteCritic
from artaug.types import Box, Critique

SECRET = "sk-test-7f3a9c-DO-NOT-LEAK"
VALID = {"edits": [{"box": [100, 200, 500, 900], "prompt": "a red door", "reason": "dull"}], "global_prompt": None}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def completion(content: str) -> dict:
    message = {"role": "assistant", "content": content}
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "fake",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}  # fmt: skip


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)


# --- a real server --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tiny_critic_dir, tmp_path_factory):
    """``transformers serve`` on a free local port; always stopped (its whole process group) at the end."""
    pytest.importorskip("uvicorn", reason="transformers serve needs the 'serve' extra: pip install -e '.[serve]'")
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    command = [str(Path(sys.executable).parent / "transformers"), "serve", str(tiny_critic_dir), "--device", "cpu",
               "--dtype", "float32", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"transformers serve exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve not ready after 120 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1", log_path
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


@pytest.mark.server
def test_remote_critic_end_to_end_on_transformers_serve(served, tiny_critic_dir, caplog, capsys):
    base_url, log_path = served
    caplog.set_level(logging.DEBUG)
    critic = RemoteCritic(base_url, max_new_tokens=16, timeout=60, max_retries=1)  # model: the server's first
    images = [Image.new("RGB", (96, 64), (200, 40, 40)), Image.new("RGB", (70, 100), (20, 90, 200))]
    critiques = critic.critique_batch(images, ["a red barn", "a blue lake"])
    for critique, image in zip(critiques, images, strict=True):
        assert critique.error is None, critique.error
        assert isinstance(critique.raw, str) and critique.raw  # the tiny model's (random) words came back
        assert critique.model == str(tiny_critic_dir) and critique.template_version.startswith("json-v1@")
        assert critique.image_size == image.size == critique.processed_size  # small images are sent as they are
        assert all(0 <= e.box.x0 < e.box.x1 <= 1 for e in critique.edits)
    pixel_critic = RemoteCritic(base_url, str(tiny_critic_dir), convention="qwen2.5-vl", max_new_tokens=8)
    critique = pixel_critic.critique(images[1], "a blue lake")
    assert critique.error is None and critique.processed_size == (84, 112)  # 70x100 snapped to 28 px multiples
    assert isinstance(critic.ask(images, "Which is better, A or B?", max_new_tokens=4), str)
    # The key went nowhere it should not.
    seen = caplog.text + capsys.readouterr().out + repr(critic) + json.dumps([c.to_dict() for c in critiques])
    assert SECRET not in seen and SECRET not in log_path.read_text()


# --- a scripted server for the faults -------------------------------------------------------------------------------


class Script:
    """What the fake endpoint answers, request by request: (status, body, delay); the last entry repeats."""

    def __init__(self, *answers: tuple[int, object, float]) -> None:
        self.answers = list(answers)
        self.requests: list[dict] = []


@pytest.fixture
def fake():
    script = Script((200, completion(json.dumps(VALID)), 0.0))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            script.requests.append(
                {"headers": {k.lower(): v for k, v in self.headers.items()}, "json": json.loads(body)}
            )
            status, answer, delay = script.answers[min(len(script.requests), len(script.answers)) - 1]
            if callable(answer):
                status, answer = answer(script.requests[-1])
            time.sleep(delay)
            payload = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    script.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield script
    server.shutdown()
    server.server_close()


def quick(url: str, **options) -> RemoteCritic:
    return RemoteCritic(url, "fake-model", **{"timeout": 5, "max_retries": 2, "backoff": 0.01, **options})


IMAGE = Image.new("RGB", (100, 70), (50, 120, 60))


def test_request_carries_a_png_data_url_of_the_recorded_size(fake):
    answer = [{"bbox_2d": [28, 21, 84, 63], "label": "a red door"}]  # Qwen2.5-VL style, pixels of the image sent
    fake.answers = [(200, completion(json.dumps(answer)), 0.0)]
    critique = quick(fake.url, convention="qwen2.5-vl").critique(IMAGE, "a meadow")
    request = fake.requests[0]
    assert request["headers"]["authorization"] == f"Bearer {SECRET}"  # the key is used, only there
    assert SECRET not in json.dumps(request["json"])
    url = request["json"]["messages"][0]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.format == "PNG" and sent.size == critique.processed_size == (112, 84)
    assert request["json"]["response_format"]["type"] == "json_schema"
    # Pixel boxes are read against the size sent (112x84), whatever the original's size (100x70).
    assert critique.error is None and critique.repairs == []
    assert critique.edits[0].box == Box(0.25, 0.25, 0.75, 0.75) and critique.image_size == (100, 70)


def test_concurrent_batch_keeps_order(fake):
    def echo_prompt(request):
        text = request["json"]["messages"][0]["content"][-1]["text"]
        prompt = text.split('"')[1]  # the template quotes the painting prompt
        return 200, completion(json.dumps([{"box": [0, 0, 500, 500], "prompt": prompt}]))

    fake.answers = [(0, echo_prompt, 0.05)]
    prompts = [f"scene number {i}" for i in range(6)]
    critiques = quick(fake.url, concurrency=3).critique_batch([IMAGE] * 6, prompts)
    assert [c.edits[0].prompt for c in critiques] == prompts and len(fake.requests) == 6


def test_retries_500_and_429_then_succeeds(fake):
    fake.answers = [
        (500, {"error": "boom"}, 0.0),
        (429, {"error": "slow down"}, 0.0),
        (200, completion("no changes"), 0),
    ]
    critique = quick(fake.url).critique(IMAGE, "a meadow")
    assert critique.error is None and len(fake.requests) == 3 and not critique.wants_changes


def test_persistent_500s_give_an_empty_critique_with_the_error(fake):
    fake.answers = [(503, {"error": {"message": "overloaded"}}, 0.0)]
    critique = quick(fake.url, max_retries=3).critique(IMAGE, "a meadow")
    assert critique.edits == [] and "after 4 attempt(s)" in critique.error and "503" in critique.error
    assert len(fake.requests) == 4 and critique.template_version and critique.model == "fake-model"


def test_server_down_is_an_error_not_a_crash():
    started = time.monotonic()
    critique = quick(f"http://127.0.0.1:{free_port()}/v1", max_retries=1).critique(IMAGE, "a meadow")
    assert critique.edits == [] and "APIConnectionError" in critique.error and "2 attempt(s)" in critique.error
    assert time.monotonic() - started < 10


def test_timeout_is_bounded(fake):
    fake.answers = [(200, completion("no changes"), 3.0)]
    started = time.monotonic()
    critique = quick(fake.url, timeout=0.5, max_retries=1).critique(IMAGE, "a meadow")
    assert "Timeout" in critique.error and time.monotonic() - started < 5  # the server would take 2 x 3 s


@pytest.mark.parametrize(
    "body",
    [b"this is not json", {"object": "chat.completion", "choices": []}, {"choices": [{"message": {"content": None}}]}],
)
def test_garbage_responses_are_recorded(fake, body):
    fake.answers = [(200, body, 0.0)]
    critique = quick(fake.url, max_retries=1).critique(IMAGE, "a meadow")
    assert critique.edits == [] and "unusable response" in critique.error


def test_oversized_and_mangled_answers_are_parsed_not_fatal(fake):
    fake.answers = [(200, completion("{" + '"edits": [' * 50_000 + "x" * 1_000_000), 0.0)]
    critique = quick(fake.url).critique(IMAGE, "a meadow")
    assert critique.error is None and critique.edits == []
    assert any("truncated" in r for r in critique.repairs)


def test_structured_output_refused_falls_back_to_text(fake):
    def refuse_schema(request):
        if "response_format" in request["json"]:
            return 400, {"error": {"message": "response_format is not supported"}}
        return 200, completion("```json\n" + json.dumps(VALID) + "\n```")

    fake.answers = [(0, refuse_schema, 0.0)]
    critic = quick(fake.url, max_retries=0)  # the fallback to plain text is not a retry
    first, second = critic.critique(IMAGE, "a"), critic.critique(IMAGE, "b")
    assert first.error is None and first.edits[0].prompt == "a red door" and second.edits == first.edits
    assert critic.structured is False and len(fake.requests) == 3  # refused once, then plain text twice


def test_refused_key_fails_at_once_and_never_echoes_it(fake, caplog):
    def echo_key(request):  # a server that quotes the key back in its error, as some do
        return 401, {"error": {"message": f"invalid key {request['headers']['authorization']}"}}

    fake.answers = [(0, echo_key, 0.0)]
    caplog.set_level(logging.DEBUG)
    critic = quick(fake.url)
    critique = critic.critique(IMAGE, "a meadow")
    assert len(fake.requests) == 1 and "401" in critique.error and "***" in critique.error
    with pytest.raises(CriticError) as raised:
        critic.ask([IMAGE], "A or B?")
    assert SECRET not in critique.error + str(raised.value) + caplog.text + repr(critic)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [(("127.0.0.1:8000",), {}), (("ftp://host/v1",), {}), (("http://user:pw@host/v1",), {}),
     (("http://h/v1",), {"timeout": 0}), (("http://h/v1",), {"max_retries": -1}),
     (("http://h/v1",), {"api_key_env": "not a name"}), (("http://h/v1",), {"convention": "qwen9"}),
     (("http://h/v1",), {"max_edits": 0}), (("http://h/v1", ""), {}), (("http://h/v1",), {"template": "nope"})],
)  # fmt: skip
def test_invalid_configuration_raises_at_construction(args, kwargs):
    with pytest.raises(ValueError):
        RemoteCritic(*args, **kwargs)


def test_cli_against_an_endpoint(fake, tmp_path, capsys):
    image_path = tmp_path / "in.png"
    IMAGE.save(image_path)
    args = ["critique", str(image_path), "--prompt", "a meadow", "--critic", fake.url, "--model", "fake-model"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1. [0.100, 0.200, 0.500, 0.900] a red door" in out and "reason: dull" in out
    assert main([*args, "--format", "json", "--draw", str(tmp_path / "drawn.png")]) == 0
    assert Critique.from_dict(json.loads(capsys.readouterr().out)).edits[0].prompt == "a red door"
    assert (tmp_path / "drawn.png").is_file()
    fake.answers = [(500, {"error": "down"}, 0.0)]
    assert main([*args, "--max-retries", "0"]) == 1  # the critic failed: said so, no traceback
    assert "FAILED" in capsys.readouterr().out


# --- an endpoint that is an outsider: trickling, oversized, deeply nested ------------------------------------------


@pytest.fixture
def raw_server():
    """A server whose whole response (status line, headers, body) is written by the test, at the pace it wants."""
    behaviour = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                behaviour["respond"](self.wfile)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    behaviour["url"] = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield behaviour
    server.shutdown()
    server.server_close()


def _headers(wfile, length: int) -> None:
    wfile.write(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n".encode())
    wfile.flush()


def test_a_trickling_endpoint_cannot_outlast_the_total_timeout(raw_server):
    body = json.dumps(completion("no changes")).encode()

    def trickle(wfile):  # one byte every 0.2 s: each read is quick, the whole answer would take minutes
        _headers(wfile, len(body))
        for byte in body:
            wfile.write(bytes([byte]))
            wfile.flush()
            time.sleep(0.2)

    raw_server["respond"] = trickle
    started = time.monotonic()
    critique = quick(raw_server["url"], timeout=1.5, max_retries=0).critique(IMAGE, "a meadow")
    assert time.monotonic() - started < 10 and "total time limit" in critique.error


def test_an_oversized_body_is_refused(raw_server):
    body = json.dumps(completion("x" * 6_000_000)).encode()

    def huge(wfile):
        _headers(wfile, len(body))
        wfile.write(body)

    raw_server["respond"] = huge
    critique = quick(raw_server["url"], max_retries=0).critique(IMAGE, "a meadow")
    assert critique.edits == [] and "larger than" in critique.error


def test_a_deeply_nested_body_is_an_unusable_answer_not_a_crash(raw_server):
    body = ("[" * 200_000 + "]" * 200_000).encode()

    def nested(wfile):
        _headers(wfile, len(body))
        wfile.write(body)

    raw_server["respond"] = nested
    critique = quick(raw_server["url"], max_retries=0).critique(IMAGE, "a meadow")
    assert critique.edits == [] and critique.error and "unusable response" in critique.error
