"""The judge: broken-image gate on synthetic images, scorers on a tiny CLIP loaded from disk, pairwise position-bias
cancellation, and every acceptance rule of ``Judge.compare``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from artaug.judge import (
    AestheticHead,
    AestheticScorer,
    BrokenConfig,
    ClipAlignmentScorer,
    ClipBundle,
    Judge,
    JudgeConfig,
    PairwiseVLMJudge,
    check,
    parse_choice,
)

# ------------------------------------------------------------------------------------------------ synthetic images


def gradient_with_shapes(seed: int, size: int = 128) -> Image.Image:
    """A smooth colour gradient with a few filled ellipses: the broad structure of a simple painting."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    base = np.stack([0.2 + 0.6 * x, 0.3 + 0.4 * y, 0.7 - 0.5 * x * y], axis=-1)
    image = Image.fromarray((base * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x0, y0 = rng.integers(0, size * 3 // 4, 2)
        w, h = rng.integers(size // 8, size // 3, 2)
        draw.ellipse([x0, y0, x0 + w, y0 + h], fill=tuple(int(v) for v in rng.integers(30, 230, 3)))
    return image


def photo_texture(seed: int, size: int = 128, contrast: float = 0.15) -> np.ndarray:
    """Procedural "photo": random phases with the 1/f amplitude spectrum of natural images, per channel, in [0, 1]."""
    rng = np.random.default_rng(seed)
    f = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :])
    f[0, 0] = 1.0
    channels = []
    for _ in range(3):
        spectrum = (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) / f
        spectrum[0, 0] = 0.0
        field = np.real(np.fft.ifft2(spectrum))
        channels.append(0.5 + contrast * (field - field.mean()) / field.std())
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0)


def to_image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8))


def night_scene(size: int = 128) -> Image.Image:
    """Dark but not broken: a dim sky with a few lit windows."""
    pixels = 0.02 + 0.05 * photo_texture(3, size, contrast=0.3)
    pixels[60:70, 20:30] = [1.0, 0.85, 0.5]
    pixels[80:88, 90:100] = [0.9, 0.8, 0.6]
    return to_image(pixels)


SOUND = {
    "gradient+shapes 0": lambda: gradient_with_shapes(0),
    "gradient+shapes 1": lambda: gradient_with_shapes(1),
    "photo texture": lambda: to_image(photo_texture(0)),
    "bright photo texture": lambda: to_image(0.35 + photo_texture(1)),
    "night scene": night_scene,
}

BROKEN = {
    "black": (lambda: Image.new("RGB", (64, 64)), "near-black"),
    "white": (lambda: Image.new("RGB", (64, 64), (255, 255, 255)), "near-white"),
    "flat grey": (lambda: Image.new("RGB", (64, 64), (128, 128, 128)), "near-flat"),
    "flat red": (lambda: Image.new("RGB", (64, 64), (200, 30, 30)), "near-flat"),
    "over-driven": (lambda: to_image((photo_texture(2) - 0.5) * 12 + 0.5), "heavily clipped"),
    "uniform noise": (
        lambda: Image.fromarray(np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)),
        "high-frequency noise",
    ),
    "checkerboard": (lambda: to_image(np.indices((64, 64)).sum(0)[..., None].repeat(3, -1) % 2 * 0.6 + 0.2), "noise"),
}


@pytest.mark.parametrize("name", list(SOUND))
def test_sound_images_pass_the_gate(name):
    assert check(SOUND[name]()) == []


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_images_fail_with_the_right_reason(name):
    make, reason = BROKEN[name]
    problems = check(make())
    assert any(reason in problem for problem in problems), problems


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_latents_are_broken_even_when_pixels_look_fine(bad):
    latents = torch.randn(1, 16, 8, 8)
    latents[0, 3, 2, 2] = bad
    problems = check(gradient_with_shapes(0), latents)
    assert len(problems) == 1 and problems[0].startswith("latents not finite"), problems
    assert check(gradient_with_shapes(0), torch.randn(1, 16, 8, 8)) == []


def test_nonfinite_float_pixels_are_broken():
    values = np.asarray(gradient_with_shapes(0).convert("L"), dtype=np.float32)
    values[5, 5] = np.nan
    assert check(Image.fromarray(values, mode="F"))[0].startswith("pixels not finite")


def test_thresholds_come_from_the_config():
    texture = to_image(photo_texture(0))
    assert check(texture, config=BrokenConfig(noise_correlation=0.99))[0].startswith("pure high-frequency noise")
    with pytest.raises(ValueError):
        BrokenConfig(black_level=0.9, white_level=0.1)


def test_tiny_painter_outputs_pass_the_gate(tiny_painter_dir):
    """The loop gates the random-weight tiny painter's paintings: they must not read as broken."""
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(tiny_painter_dir)
    for seed in range(3):
        out = pipe(
            "a red fox in the snow",
            height=64,
            width=64,
            num_inference_steps=2,
            max_sequence_length=16,
            generator=torch.Generator().manual_seed(seed),
            output_type="pil",
        )
        assert check(out.images[0]) == [], seed


# ------------------------------------------------------------------------------------------------ CLIP scorers


@pytest.fixture(scope="module")
def tiny_clip(tiny_clip_dir):
    return ClipBundle.from_pretrained(tiny_clip_dir, device="cpu")


@pytest.fixture(scope="module")
def head_file(tiny_clip, tmp_path_factory):
    torch.manual_seed(0)
    head = AestheticHead(input_size=tiny_clip.model.config.projection_dim)
    return head.save(tmp_path_factory.mktemp("head") / "sac+logos+ava1-l14-linearMSE.pth")


IMAGES = [gradient_with_shapes(0), gradient_with_shapes(1), to_image(photo_texture(0)), night_scene()]
PROMPTS = ["a sunset over the sea", "a red apple on a table", "a cat asleep", "a city at night"]


def _reference_embeddings(folder, images, prompts):
    """CLIP embeddings computed straight through transformers, independently of ClipBundle."""
    from transformers import CLIPModel, CLIPProcessor

    model, processor = CLIPModel.from_pretrained(folder).eval(), CLIPProcessor.from_pretrained(folder)
    with torch.no_grad():
        inputs = processor(text=prompts, images=images, return_tensors="pt", padding=True)
        out = model(**inputs)
    return out.image_embeds, out.text_embeds  # CLIPModel's forward already L2-normalises both


def test_published_head_layout_and_keys():
    head = AestheticHead()
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert shapes == {
        "layers.0.weight": (1024, 768),
        "layers.0.bias": (1024,),
        "layers.2.weight": (128, 1024),
        "layers.2.bias": (128,),
        "layers.4.weight": (64, 128),
        "layers.4.bias": (64,),
        "layers.6.weight": (16, 64),
        "layers.6.bias": (16,),
        "layers.7.weight": (1, 16),
        "layers.7.bias": (1,),
    }


def test_aesthetic_scorer_loads_from_disk_and_matches_reference(tiny_clip_dir, head_file):
    scorer = AestheticScorer.from_pretrained(tiny_clip_dir, head=head_file, device="cpu")
    scores = scorer.score(IMAGES, PROMPTS)

    state = torch.load(head_file, weights_only=True)
    reference_head = AestheticHead(input_size=state["layers.0.weight"].shape[1])
    reference_head.load_state_dict(state)
    image_embeds, _ = _reference_embeddings(tiny_clip_dir, IMAGES, PROMPTS)
    with torch.no_grad():
        expected = reference_head.eval()(image_embeds).tolist()
    assert scores == pytest.approx(expected, abs=1e-5)
    assert len(set(np.round(scores, 6))) == len(IMAGES), "different images should score differently"

    # Batching does not change a score; the prompt does not either (the predictor is image-only).
    scorer.batch_size = 1
    assert scorer.score(IMAGES[::-1], PROMPTS) == pytest.approx(scores[::-1], abs=1e-5)


def test_aesthetic_head_safetensors_round_trip_and_errors(tiny_clip, head_file, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast: no hub on these machines
    head = AestheticHead.load(head_file)
    again = AestheticHead.load(head.save(tmp_path / "head.safetensors"))
    for key, value in head.state_dict().items():
        assert torch.equal(value, again.state_dict()[key])

    with pytest.raises(ValueError, match="makes 32-d"):
        AestheticScorer(tiny_clip, AestheticHead(input_size=768))
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a LAION aesthetic head"):
        AestheticHead.load(tmp_path / "other.pth")
    with pytest.raises(FileNotFoundError):
        AestheticHead.load(tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError, match="neither a local file nor downloadable"):
        AestheticHead.load("no-such-owner/no-such-repo/head.pth")  # no hub here; a clear error either way
    with pytest.raises(ValueError, match="one prompt per image"):
        AestheticScorer(tiny_clip, head).score(IMAGES, PROMPTS[:1])


def test_alignment_scorer_is_clipped_scaled_cosine(tiny_clip_dir):
    scorer = ClipAlignmentScorer.from_pretrained(tiny_clip_dir, device="cpu")
    images = [image for image in IMAGES for _ in PROMPTS]  # every image against every prompt
    prompts = PROMPTS * len(IMAGES)
    scores = scorer.score(images, prompts)

    image_embeds, text_embeds = _reference_embeddings(tiny_clip_dir, images, prompts)
    cosine = (image_embeds * text_embeds).sum(-1)
    assert (cosine > 0).all(), "this tiny CLIP's cosines are all positive, so the scores are plain 100 * cosine"
    assert scores == pytest.approx((100 * cosine).tolist(), abs=1e-4)
    assert len(set(np.round(scores, 4))) == len(scores), "each (image, prompt) pair scores differently"

    # Negating the text projection flips every cosine below zero: CLIPScore clips those at 0.
    with torch.no_grad():
        scorer.clip.model.text_projection.weight.neg_()
    assert scorer.score(images, prompts) == [0.0] * len(images)


# ------------------------------------------------------------------------------------------------ pairwise


def brightness(image: Image.Image) -> float:
    return float(np.asarray(image.convert("L"), dtype=np.float32).mean())


class FakeCritic:
    """A critic backend with the real ``ask`` signature whose answer is a function of what it is shown."""

    def __init__(self, answer):
        self.answer = answer
        self.calls: list[tuple[list[Image.Image], str, int]] = []

    def ask(self, images: list[Image.Image], text: str, max_new_tokens: int = 64) -> str:
        self.calls.append((list(images), text, max_new_tokens))
        return self.answer(images, text)


def always(letter):
    return FakeCritic(lambda images, text: letter)


def prefers_brighter():
    return FakeCritic(lambda images, text: "Image A." if brightness(images[0]) > brightness(images[1]) else "B")


DARK, BRIGHT = to_image(0.25 + 0.5 * photo_texture(4) * 0.5), to_image(0.45 + 0.5 * photo_texture(4))


@pytest.mark.parametrize("letter", ["A", "B"])
def test_position_bias_cancels(letter):
    assert PairwiseVLMJudge(always(letter)).prefer(DARK, BRIGHT, "a forest") == 0.5


def test_pairwise_asks_both_orders_and_follows_a_consistent_judge():
    critic = prefers_brighter()
    judge = PairwiseVLMJudge(critic, max_new_tokens=5)
    assert judge.prefer(DARK, BRIGHT, "a forest") == 1.0
    assert judge.prefer(BRIGHT, DARK, "a forest") == 0.0
    first, second = critic.calls[:2]
    assert first[0] == [DARK, BRIGHT] and second[0] == [BRIGHT, DARK]
    assert "a forest" in first[1] and first[2] == 5
    assert judge.history[0].choices == ["B", "A"]


def test_unparseable_answers_count_as_half_and_are_recorded():
    judge = PairwiseVLMJudge(FakeCritic(lambda images, text: "both are lovely"))
    result = judge.judge(DARK, BRIGHT, "a forest")
    assert result.preference == 0.5 and result.unparsed == ["both are lovely", "both are lovely"]
    # One readable answer (after wins in the first order) and one unreadable: (1 + 0.5) / 2.
    answers = iter(["B", "hmm"])
    assert PairwiseVLMJudge(FakeCritic(lambda images, text: next(answers))).prefer(DARK, BRIGHT, "x") == 0.75


@pytest.mark.parametrize(
    ("answer", "choice"),
    [
        ("A", "A"),
        ("B.", "B"),
        ("(B)", "B"),
        ("Answer: A", "A"),
        ("Image B is better", "B"),
        ("I prefer image A.", "A"),
        ("The better one is B", "B"),
        ("a painting of a fox", None),
        ("image A or image B, hard to say", None),
        ("A or B", None),
        ("A. Image A is sharper than image B.", "A"),
        ("neither", None),
        ("", None),
    ],
)
def test_parse_choice(answer, choice):
    assert parse_choice(answer) == choice


def test_pairwise_with_the_real_local_critic(tiny_critic_dir):
    from artaug.critic.local import LocalCritic

    critic = LocalCritic.from_pretrained(tiny_critic_dir, device="cpu")
    result = PairwiseVLMJudge(critic, max_new_tokens=4).judge(DARK, BRIGHT, "a forest")
    assert len(result.answers) == 2 and all(isinstance(a, str) for a in result.answers)
    assert result.choices == [parse_choice(a) for a in result.answers]
    votes = [0.5 if c is None else float(c == after) for c, after in zip(result.choices, "BA", strict=True)]
    assert result.preference == sum(votes) / 2


# ------------------------------------------------------------------------------------------------ acceptance rules


class TableScorer:
    """A scorer that reads each image's score from a table (so a test states exactly what every image scores)."""

    def __init__(self, name: str, table: dict[int, float]):
        self.name, self.table, self.calls = name, table, 0

    def score(self, images, prompts):
        self.calls += len(images)
        return [self.table[id(image)] for image in images]


BEFORE, AFTER = gradient_with_shapes(0), gradient_with_shapes(1)


def judge_with(aesthetic=None, alignment=None, critic=None, **config):
    scorers = []
    for name, pair in (("aesthetic", aesthetic), ("alignment", alignment)):
        if pair is not None:
            scorers.append(TableScorer(name, {id(BEFORE): pair[0], id(AFTER): pair[1]}))
    config = JudgeConfig(pairwise=critic is not None, **config)
    return Judge(config, scorers, PairwiseVLMJudge(critic) if critic else None)


def test_gate_only_by_default():
    judge = Judge.from_config()
    assert judge.scorers == [] and judge.pairwise is None
    verdict = judge.compare(BEFORE, AFTER, "p")
    assert verdict.accepted and verdict.scores == {} and verdict.preference is None
    assert judge.scores(AFTER, "p") == {}


@pytest.mark.parametrize(
    ("after", "latents", "reason"),
    [
        (Image.new("RGB", (64, 64)), None, "broken: near-black"),
        (gradient_with_shapes(1), torch.full((1, 4), float("nan")), "broken: latents not finite"),
    ],
)
def test_broken_revision_is_rejected_before_any_scorer_runs(after, latents, reason):
    judge = judge_with(aesthetic=(5.0, 9.0), critic=always("B"))
    verdict = judge.compare(BEFORE, after, "p", after_latents=latents)
    assert not verdict.accepted and verdict.reasons[0].startswith(reason) and verdict.problems
    assert judge.scorers[0].calls == 0 and judge.pairwise.critic.calls == []


@pytest.mark.parametrize(
    ("aesthetic", "alignment", "accepted"),
    [
        ((5.0, 5.5), None, True),  # better
        ((5.0, 4.95), None, True),  # worse, but within epsilon 0.1
        ((5.12, 4.90), None, False),  # worse by more than epsilon
        (None, (30.0, 29.5), True),  # within epsilon 1.0
        (None, (30.0, 28.0), False),
        ((5.0, 6.0), (30.0, 28.0), False),  # one rule failing is enough
        ((5.0, 4.0), (30.0, 35.0), False),
        ((5.0, 5.05), (30.0, 30.5), True),
    ],
)
def test_not_worse_by_more_than_epsilon(aesthetic, alignment, accepted):
    verdict = judge_with(aesthetic, alignment).compare(BEFORE, AFTER, "p")
    assert verdict.accepted is accepted, verdict.reasons
    for name, pair in (("aesthetic", aesthetic), ("alignment", alignment)):
        if pair is not None:
            assert verdict.scores[name] == pair[1]
            assert any(r.startswith(f"{name} {pair[0]:.2f} -> {pair[1]:.2f}") for r in verdict.reasons)


def test_reason_states_the_measured_drop_and_the_allowance():
    verdict = judge_with(aesthetic=(5.12, 4.90)).compare(BEFORE, AFTER, "p")
    assert "aesthetic 5.12 -> 4.90 (-0.22 < -0.10)" in verdict.reasons
    verdict = judge_with(aesthetic=(5.12, 4.90), aesthetic_epsilon=0.5).compare(BEFORE, AFTER, "p")
    assert verdict.accepted and "aesthetic 5.12 -> 4.90 (-0.22 >= -0.50)" in verdict.reasons


def test_given_before_scores_are_reused_not_recomputed():
    judge = judge_with(aesthetic=(5.0, 5.5))
    verdict = judge.compare(BEFORE, AFTER, "p", before_scores={"aesthetic": 6.0})
    assert judge.scorers[0].calls == 1  # the revision only
    assert not verdict.accepted and "aesthetic 6.00 -> 5.50 (-0.50 < -0.10)" in verdict.reasons


@pytest.mark.parametrize(
    ("critic", "accepted", "preference"),
    [(prefers_brighter, True, 1.0), (lambda: always("A"), False, 0.5), (lambda: always("B"), False, 0.5)],
)
def test_pairwise_must_prefer_the_revision(critic, accepted, preference):
    dark_first = {id(DARK): 5.0, id(BRIGHT): 5.0}
    judge = Judge(JudgeConfig(pairwise=True), [TableScorer("aesthetic", dark_first)], PairwiseVLMJudge(critic()))
    verdict = judge.compare(DARK, BRIGHT, "p")
    assert verdict.accepted is accepted and verdict.preference == preference
    assert verdict.scores["pairwise"] == preference
    assert any(r.startswith("pairwise") for r in verdict.reasons)


def test_pairwise_is_not_asked_once_already_rejected():
    judge = judge_with(aesthetic=(5.0, 3.0), critic=prefers_brighter())
    verdict = judge.compare(BEFORE, AFTER, "p")
    assert not verdict.accepted and verdict.preference is None and judge.pairwise.critic.calls == []


def test_pairwise_needs_a_critic():
    with pytest.raises(ValueError, match="critic"):
        Judge.from_config(JudgeConfig(pairwise=True))


def test_from_config_loads_both_scorers_on_one_shared_clip(tiny_clip_dir, head_file, tmp_path):
    config = JudgeConfig(
        aesthetic=True,
        aesthetic_clip=str(tiny_clip_dir),
        aesthetic_head=str(head_file),
        alignment=True,
        alignment_clip=str(tiny_clip_dir),
        device="cpu",
    )
    judge = Judge.from_config(config)
    aesthetic, alignment = judge.scorers
    assert aesthetic.clip is alignment.clip
    scores = judge.scores(IMAGES[0], PROMPTS[0])
    assert set(scores) == {"aesthetic", "alignment"} and all(math.isfinite(v) for v in scores.values())
    verdict = judge.compare(IMAGES[0], IMAGES[0], PROMPTS[0])
    assert verdict.accepted and verdict.scores == pytest.approx(scores, abs=1e-5)

    # The same config through TOML, as the loop's config file carries it.
    import tomli_w

    from artaug.config import load_config

    (tmp_path / "judge.toml").write_text(tomli_w.dumps({"judge": config.to_dict()}))
    assert load_config(tmp_path / "judge.toml").judge == config
    with pytest.raises(ValueError, match="unknown setting judge.aesthetc"):
        JudgeConfig.from_dict({"aesthetc": True})
