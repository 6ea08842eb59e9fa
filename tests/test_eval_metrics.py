"""The metrics registry on tiny random weights saved in the real layouts, loaded through the real loading code:
PickScore, CLIPScore and the aesthetic predictor on the tiny CLIP, VQAScore on the tiny Qwen2-VL in process and
behind a scripted OpenAI-compatible endpoint, and the world metric on rendered scenes. Scores of random weights mean
nothing; these tests prove that each metric computes its published formula from what it loads."""

from __future__ import annotations

import json
import math
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from PIL import Image

from artaug.config import EVAL_METRICS, load_config
from artaug.eval import Sample, load_metrics, score_safely
from artaug.eval.registry import LOADERS
from artaug.eval.vqa import LogprobCritic, VQAScore, extend_tokens, local_yes_probability, parse_yes_no

PROMPTS = ["a red fox in the snow", "a lighthouse at dusk", "two cats on a sofa"]


def images() -> list[Image.Image]:
    g = torch.Generator().manual_seed(0)
    return [Image.fromarray((torch.rand(40, 48, 3, generator=g) * 255).to(torch.uint8).numpy()) for _ in PROMPTS]


def samples() -> list[Sample]:
    return [Sample(image, prompt) for image, prompt in zip(images(), PROMPTS, strict=True)]


def test_the_registry_knows_exactly_the_configs_metric_names():
    assert tuple(LOADERS) == EVAL_METRICS
    with pytest.raises(ValueError, match="eval.metrics"):
        load_config(None, {"eval.metrics": "imagereward"})


@pytest.fixture(scope="module")
def head_file(tmp_path_factory) -> str:
    from artaug.judge.scorers import AestheticHead

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("head") / "head.safetensors"
    AestheticHead(input_size=32).save(path)  # the tiny CLIP projects to 32 dimensions
    return str(path)


@pytest.fixture(scope="module")
def clip_metrics(tiny_clip_dir, head_file):
    clip = str(tiny_clip_dir)
    config = load_config(None, {"eval.metrics": "pickscore,clipscore,aesthetic", "eval.clip_model": clip,
                                "eval.aesthetic_clip": clip, "eval.aesthetic_head": head_file, "eval.device": "cpu",
                                "eval.pickscore_model": clip, "eval.pickscore_processor": clip})  # fmt: skip
    return load_metrics(config.eval.metrics, config.eval)


def reference_embeddings(folder) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Unit image and text embeddings and exp(logit_scale), straight from transformers."""
    from transformers import CLIPModel, CLIPProcessor

    model, processor = CLIPModel.from_pretrained(folder).eval(), CLIPProcessor.from_pretrained(folder)
    with torch.no_grad():
        pixels = processor(images=images(), return_tensors="pt")["pixel_values"]
        text = processor(text=PROMPTS, padding=True, truncation=True, max_length=77, return_tensors="pt")
        image_out = model.get_image_features(pixel_values=pixels)
        text_out = model.get_text_features(input_ids=text["input_ids"], attention_mask=text["attention_mask"])
    image_out = getattr(image_out, "pooler_output", image_out)
    text_out = getattr(text_out, "pooler_output", text_out)
    unit = torch.nn.functional.normalize
    return unit(image_out, dim=-1), unit(text_out, dim=-1), float(model.logit_scale.detach().exp())


def test_pickscore_and_clipscore_are_their_published_formulas(clip_metrics, tiny_clip_dir):
    images_, texts, scale = reference_embeddings(tiny_clip_dir)
    cosine = (images_ * texts).sum(-1)
    pick = [r.value for r in clip_metrics["pickscore"].score(samples())]
    clip = [r.value for r in clip_metrics["clipscore"].score(samples())]
    assert pick == pytest.approx((scale * cosine).tolist(), abs=1e-4)
    assert clip == pytest.approx((100 * cosine.clamp(min=0)).tolist(), abs=1e-3)
    assert scale == pytest.approx(math.exp(2.6592), rel=1e-3)  # CLIP's initial logit scale, saved in the folder


def test_aesthetic_reuses_the_judges_scorer_and_shares_the_clip(clip_metrics, tiny_clip_dir, head_file):
    from artaug.judge.scorers import AestheticScorer

    direct = AestheticScorer.from_pretrained(str(tiny_clip_dir), head_file, device="cpu")
    ours = clip_metrics["aesthetic"]
    assert isinstance(ours.scorer, AestheticScorer)
    assert ours.scorer.clip is clip_metrics["clipscore"].scorer.clip  # one CLIP for both
    expected = direct.score(images(), PROMPTS)
    assert [r.value for r in ours.score(samples())] == pytest.approx(expected, abs=1e-5)


def test_world_metric_scores_rendered_scenes_and_records_foreign_prompts():
    from artaug.world.grammar import parse_prompt
    from artaug.world.scenes import layout, render

    metric = load_metrics(("world",), load_config().eval)["world"]
    prompt = "a red circle"
    image = render(layout(parse_prompt(prompt), random.Random(0)))
    out = score_safely(metric, [Sample(image, prompt), Sample(image, "a blue square"), Sample(image, "a cat")])
    assert out[0].value == 1.0 and out[1].value == 0.0
    assert isinstance(out[2], str)  # a prompt outside the world grammar: a recorded failure


# --- VQAScore in process ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_critic(tiny_critic_dir):
    from artaug.critic.local import LocalCritic

    return LocalCritic.from_pretrained(tiny_critic_dir, device="cpu", dtype=torch.float32)


def test_vqascore_local_is_the_probability_of_yes_token_by_token(local_critic):
    image, question = images()[0], 'Does this figure show "a red fox"? Please answer yes or no.'
    value = local_yes_probability(local_critic, image, question)

    # The same probability, one generated token at a time (the tiny tokenizer spells "Yes" in two tokens).
    processor, model = local_critic.processor, local_critic.model
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    answer = processor.tokenizer("Yes", add_special_tokens=False).input_ids
    assert len(answer) > 1
    probability = 1.0
    for token in answer:
        with torch.no_grad():
            logits = model(**inputs).logits[0, -1]
        probability *= float(torch.softmax(logits.float(), -1)[token])
        extend_tokens(inputs, torch.tensor([[token]]))
    assert 0 < value < 1 and value == pytest.approx(probability, rel=1e-4)


def test_vqascore_metric_in_process_says_its_method(local_critic):
    metric = VQAScore(local_critic)
    results = metric.score(samples()[:2])
    assert all(0 < r.value < 1 and r.detail == {"method": "local"} for r in results)
    assert results[0].value != results[1].value  # the prompt goes into the question
    with pytest.raises(ValueError, match="prompt"):
        VQAScore(local_critic, question="Is this good?")


# --- VQAScore behind an endpoint -----------------------------------------------------------------------------------


def completion(content: str, logprobs: list[tuple[str, float]] | None = None) -> dict:
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
    if logprobs is not None:
        top = [{"token": t, "logprob": lp, "bytes": None} for t, lp in logprobs]
        choice["logprobs"] = {"content": [{"token": logprobs[0][0], "logprob": logprobs[0][1], "bytes": None,
                                           "top_logprobs": top}]}  # fmt: skip
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "fake", "choices": [choice]}


@pytest.fixture
def endpoint(monkeypatch):
    """A scripted OpenAI-compatible server on 127.0.0.1: ``answer(request) -> (status, body)``."""
    monkeypatch.setenv("OPENAI_API_KEY", "not-a-secret")
    state = {"answer": None, "requests": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            state["requests"].append(request)
            status, body = state["answer"](request)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield state
    server.shutdown()
    server.server_close()


def remote(url: str) -> VQAScore:
    return VQAScore(LogprobCritic(url, "fake-model", timeout=5, max_retries=0))


def test_vqascore_remote_reads_logprobs_when_the_server_gives_them(endpoint):
    endpoint["answer"] = lambda request: (200, completion("Yes", [("Yes", -0.4), ("No", -1.5), (" yes", -3.0)]))
    result = remote(endpoint["url"]).score(samples()[:1])[0]
    assert result.detail == {"method": "logprobs"}
    assert result.value == pytest.approx(math.exp(-0.4) + math.exp(-3.0))
    request = endpoint["requests"][0]
    assert request["logprobs"] is True and request["top_logprobs"] == 20
    assert PROMPTS[0] in request["messages"][0]["content"][-1]["text"]


def test_vqascore_remote_parses_the_answer_without_logprobs(endpoint):
    endpoint["answer"] = lambda request: (200, completion("No, it does not."))
    result = remote(endpoint["url"]).score(samples()[:1])[0]
    assert (result.value, result.detail) == (0.0, {"method": "parsed"})


def test_vqascore_remote_asks_again_plainly_when_logprobs_are_refused(endpoint):
    def answer(request):
        if "logprobs" in request:
            return 400, {"error": {"message": "logprobs are not supported", "type": "invalid_request_error"}}
        return 200, completion("yes")

    endpoint["answer"] = answer
    metric = remote(endpoint["url"])
    first, second = metric.score(samples()[:2])
    assert first.value == second.value == 1.0 and first.detail == {"method": "parsed"}
    assert [("logprobs" in r) for r in endpoint["requests"]] == [True, False, False]  # refused once, then never asked


def test_vqascore_remote_records_an_answer_that_is_neither(endpoint):
    endpoint["answer"] = lambda request: (200, completion("Perhaps."))
    out = score_safely(remote(endpoint["url"]), samples()[:2])
    assert all(isinstance(o, str) and "neither yes nor no" in o for o in out)
    assert parse_yes_no(' "Yes" it does') == 1.0 and parse_yes_no("no.") == 0.0
