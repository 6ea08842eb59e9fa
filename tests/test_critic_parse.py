"""The critique parser is a contract: whatever the VLM writes, ``parse_critique`` returns valid boxes and records every
repair. Round-trip tests check that well-formed answers in every supported form read back exactly; property tests
throw >10,000 generated, mutated and arbitrary answers at it."""

from __future__ import annotations

import json
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artaug.critic import CONVENTIONS, parse_critique
from artaug.types import Box, Critique, Edit


def prop(max_examples: int) -> settings:
    """Deterministic, database-free hypothesis settings so CI sees the same examples on every run."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


WORDS = [
    "warm", "golden", "rim", "light", "on", "the", "couple", "crisp", "five", "fingered", "hand", "soft", "fog",
    "over", "distant", "hills", "red", "door",
]  # fmt: skip
HOSTILE = [
    "<|box_start|>", "<|box_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|im_end|>", "<ref>", "</box>",
    "{", "}", "[", "]", "(", ")", ",", ":", '"', "'", "```", "```json", "\n", "-", "NaN", "Infinity", "1e999", "-5",
    "99999", "0.5", "null", "true", '"box":', '"bbox_2d":', '"prompt":', '"edits":', "global_prompt: ", "no changes",
    "\x00", "é", "🎨", " " * 50,
]  # fmt: skip

# Local prompts of 1-5 words; a fixed pool keeps generation cheap so the examples go to the parser, not to drawing.
PHRASES = [" ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(1 + i % 5)) for i in range(60)]
phrase = st.sampled_from(PHRASES)


@st.composite
def corner_boxes(draw, limit: int = 1000, min_side: int = 20) -> tuple[int, int, int, int]:
    """Integer corners in [0, limit] with sides of at least ``min_side`` units (over a pixel on a 64 px image)."""
    x0 = draw(st.integers(0, limit - min_side))
    y0 = draw(st.integers(0, limit - min_side))
    return x0, y0, draw(st.integers(x0 + min_side, limit)), draw(st.integers(y0 + min_side, limit))


edits_strategy = st.lists(st.tuples(corner_boxes(), phrase, phrase), min_size=1, max_size=4, unique_by=lambda e: e[0])
sizes = st.tuples(st.integers(64, 2048), st.integers(64, 2048))


def assert_valid(critique: Critique, text: object, image_size: tuple[int, int], max_edits: int | None = None) -> None:
    """The contract, checked on every parse."""
    assert isinstance(critique, Critique)
    assert critique.raw == (text if isinstance(text, str) else "")
    assert all(isinstance(r, str) and r for r in critique.repairs)
    assert not any("internal parser failure" in r for r in critique.repairs), critique.repairs
    for edit in critique.edits:
        assert isinstance(edit, Edit) and isinstance(edit.box, Box)
        b = edit.box
        assert all(isinstance(v, float) for v in (b.x0, b.y0, b.x1, b.y1))
        assert 0.0 <= b.x0 < b.x1 <= 1.0 and 0.0 <= b.y0 < b.y1 <= 1.0
        assert (b.x1 - b.x0) * image_size[0] >= 1.0 - 1e-9 and (b.y1 - b.y0) * image_size[1] >= 1.0 - 1e-9
        assert isinstance(edit.prompt, str) and edit.prompt.strip() and "<|" not in edit.prompt
    assert critique.global_prompt is None or (isinstance(critique.global_prompt, str) and critique.global_prompt)
    if max_edits is not None:
        assert len(critique.edits) <= max_edits
    assert Critique.from_dict(json.loads(json.dumps(critique.to_dict()))) == critique


def assert_same_edits(critique: Critique, edits: list, scale: tuple[float, float]) -> None:
    assert critique.repairs == []
    assert [e.prompt for e in critique.edits] == [prompt for _, prompt, _ in edits]
    for edit, (corners, _, reason) in zip(critique.edits, edits, strict=True):
        expected = (corners[0] / scale[0], corners[1] / scale[1], corners[2] / scale[0], corners[3] / scale[1])
        got = (edit.box.x0, edit.box.y0, edit.box.x1, edit.box.y1)
        assert got == pytest.approx(expected, abs=1e-9)
        assert edit.reason == reason


# --- rendering answers in each supported form ---------------------------------------------------------------------


def grounding(edits, spaces: bool, old_tags: bool) -> str:
    ref, ref_end, box, box_end = ("<ref>", "</ref>", "<box>", "</box>") if old_tags else (
        "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>")  # fmt: skip
    sp = " " if spaces else ""
    lines = ["Here is what I would change."]
    for (x0, y0, x1, y1), prompt, reason in edits:
        lines.append(
            f"{ref}{prompt}{ref_end}{box}({sp}{x0},{sp}{y0}{sp}),{sp}({x1},{sp}{y1}){box_end} reason: {reason}"
        )
    return "\n".join(lines)


def stripped(edits) -> str:
    return "\n".join(f"{i + 1}. {p}({b[0]},{b[1]}),({b[2]},{b[3]}) - {r}" for i, (b, p, r) in enumerate(edits))


def project_json(edits, global_prompt: str | None, wrap: str) -> str:
    data = {"edits": [{"box": list(b), "prompt": p, "reason": r} for b, p, r in edits], "global_prompt": global_prompt}
    body = json.dumps(data, indent=2 if wrap == "fenced" else None)
    return {"bare": body, "fenced": f"```json\n{body}\n```", "prose": f"My critique:\n{body}\nThat is all."}[wrap]


def qwen_json(edits, key: str) -> str:
    return json.dumps([{key: list(b), "label": p, "reason": r} for b, p, r in edits])


# --- round trips ----------------------------------------------------------------------------------------------------


@given(edits=edits_strategy, size=sizes, spaces=st.booleans(), old_tags=st.booleans(), auto=st.booleans())
@prop(1200)
def test_grounding_tokens_round_trip(edits, size, spaces, old_tags, auto):
    text = grounding(edits, spaces, old_tags)
    critique = parse_critique(text, size, convention="auto" if auto else "qwen2-vl")
    assert_valid(critique, text, size)
    assert_same_edits(critique, edits, (1000, 1000))
    assert critique.convention == "qwen2-vl"


@given(edits=edits_strategy, size=sizes)
@prop(1000)
def test_stripped_grounding_round_trip(edits, size):
    text = stripped(edits)
    critique = parse_critique(text, size)
    assert_valid(critique, text, size)
    assert_same_edits(critique, edits, (1000, 1000))


@given(edits=edits_strategy, size=sizes, wrap=st.sampled_from(["bare", "fenced", "prose"]), global_prompt=phrase)
@prop(1000)
def test_project_json_round_trip(edits, size, wrap, global_prompt):
    text = project_json(edits, global_prompt, wrap)
    critique = parse_critique(text, size, convention="auto")
    assert_valid(critique, text, size)
    assert_same_edits(critique, edits, (1000, 1000))
    assert critique.global_prompt == global_prompt


@st.composite
def pixel_edits(draw, width: int, height: int) -> tuple:
    x0, x1 = sorted(draw(st.lists(st.integers(0, width), min_size=2, max_size=2, unique=True)))
    y0, y1 = sorted(draw(st.lists(st.integers(0, height), min_size=2, max_size=2, unique=True)))
    return (x0, y0, x1, y1), draw(phrase), draw(phrase)


@given(data=st.data(), size=st.tuples(st.integers(1500, 2048), st.integers(1500, 2048)))
@prop(1000)
def test_qwen25_pixel_json_round_trip(data, size):
    # Qwen2.5-VL answers in pixels of the image as its processor resized it, which may differ from the original.
    processed = (data.draw(st.integers(28, 1400)), data.draw(st.integers(28, 1400)))
    edits = data.draw(st.lists(pixel_edits(*processed), min_size=1, max_size=4, unique_by=lambda e: e[0]))
    text = qwen_json(edits, "bbox_2d")
    for convention in ("qwen2.5-vl", "json-pixels", "auto"):
        critique = parse_critique(text, size, convention=convention, processed_size=processed)
        assert_valid(critique, text, size)
        assert_same_edits(critique, edits, processed)


@given(edits=edits_strategy, size=sizes, convention=st.sampled_from(["qwen3-vl", "json-1000", "auto"]))
@prop(500)
def test_qwen3_json_round_trip(edits, size, convention):
    text = qwen_json(edits, "bbox_2d")
    critique = parse_critique(text, size, convention=convention)  # no processed size: 0..1000
    assert_valid(critique, text, size)
    assert_same_edits(critique, edits, (1000, 1000))


# --- never breaks ---------------------------------------------------------------------------------------------------


@st.composite
def mutated_answers(draw) -> str:
    """A well-formed answer in a random form, then 1-6 random mutations (cuts, junk, digit swaps, truncation)."""
    edits = draw(edits_strategy)
    forms = [
        lambda: grounding(edits, draw(st.booleans()), draw(st.booleans())),
        lambda: stripped(edits),
        lambda: project_json(edits, draw(st.none() | phrase), draw(st.sampled_from(["bare", "fenced", "prose"]))),
        lambda: qwen_json(edits, draw(st.sampled_from(["bbox_2d", "box", "bbox"]))),
    ]
    text = draw(st.sampled_from(forms))()
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 40)))
        kind = draw(st.sampled_from(["delete", "insert", "replace", "truncate", "duplicate", "digits"]))
        if kind == "delete":
            text = text[:i] + text[j:]
        elif kind == "insert":
            text = text[:i] + draw(st.sampled_from(HOSTILE) | st.text(max_size=8)) + text[i:]
        elif kind == "replace":
            text = text[:i] + draw(st.sampled_from(HOSTILE)) + text[j:]
        elif kind == "truncate":
            text = text[:i]
        elif kind == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        else:  # digits become other numbers, signs or letters
            new = draw(st.sampled_from(["-", "x", "9999", "1e400", ".", "O", "-0"]))
            text = text[:i] + re.sub(r"\d", new, text[i:j], count=draw(st.integers(1, 3))) + text[j:]
    return text


@given(
    text=mutated_answers(),
    size=sizes,
    convention=st.sampled_from(CONVENTIONS),
    processed=st.none() | sizes,
    max_edits=st.none() | st.integers(0, 3),
)
@prop(3000)
def test_mutated_answers_never_break(text, size, convention, processed, max_edits):
    critique = parse_critique(text, size, convention=convention, processed_size=processed, max_edits=max_edits)
    assert_valid(critique, text, size, max_edits)


structural = st.sampled_from(HOSTILE) | st.text(max_size=3) | st.integers(-2000, 3000).map(str)


@given(
    pieces=st.lists(structural, max_size=40),
    size=sizes,
    convention=st.sampled_from(CONVENTIONS),
)
@prop(1500)
def test_arbitrary_text_never_breaks(pieces, size, convention):
    text = "".join(pieces)
    critique = parse_critique(text, size, convention=convention, processed_size=size)
    assert_valid(critique, text, size)


@given(value=st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(
        st.sampled_from(["box", "bbox_2d", "prompt", "label", "edits", "global_prompt", "reason", "x0", "y0", "x1",
                         "y1", "description", "regions"]) | st.text(max_size=5), children, max_size=5),
    max_leaves=30,
))  # fmt: skip
@prop(1000)
def test_arbitrary_json_never_breaks(value):
    text = json.dumps(value)
    critique = parse_critique(text, (640, 480))
    assert_valid(critique, text, (640, 480))


# --- the repairs are recorded ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "n_edits", "repair"),
    [
        ('{"edits": [{"box": [600, 100, 200, 400], "prompt": "a lamp"}]}', 1, "reordered"),
        ('{"edits": [{"box": [-50, 100, 200, 1000], "prompt": "a lamp"}]}', 1, "clamped"),
        ('{"edits": [{"box": [100, 100, 100, 400], "prompt": "a lamp"}]}', 0, "thinner than a pixel"),
        ('{"edits": [{"box": [100, 100, 300, 400]}]}', 0, "no prompt"),
        ('{"edits": [{"box": [100, 100, 300, 400], "prompt": "   "}]}', 0, "empty after cleaning"),
        ('{"edits": [{"box": [100, 100, 300, 400], "prompt": 42}]}', 0, "not text"),
        ('{"edits": [{"box": [100, "ten", 300, 400], "prompt": "a lamp"}]}', 0, "not four numbers"),
        ('{"edits": [{"box": [100, NaN, 300, 400], "prompt": "a lamp"}]}', 0, "not four numbers"),
        ('{"edits": [{"box": [100, true, 300, 400], "prompt": "a lamp"}]}', 0, "not four numbers"),
        ('{"edits": [{"box": [100, 100, 300], "prompt": "a lamp"}]}', 0, "not four numbers"),
        ('{"edits": [{"box": ["100", "100", "300", "400"], "prompt": "a lamp"}]}', 1, "strings"),
        ('{"edits": [{"box": [100, 100, 300, 400], "prompt": "a lamp"},]}', 1, "trailing commas"),
        ('{"edits": [{"prompt": "a lamp"}]}', 0, "no box"),
        ('{"edits": [{"box": [1, 1, 300, 400], "prompt": "a"}, {"box": [1, 1, 300, 400], "prompt": "a"}]}', 1,
         "duplicate"),
        ('{"edits": [{"box": [100, 100, 300, 400], "prompt": "a lamp"}, {"box": [500, 5', 1, "cut off"),
        ('[{"bbox_2d": [0.1, 0.2, 0.5, 0.9], "label": "a lamp"}]', 1, "normalised 0..1"),
        ('[{"bbox_2d": [100, 100, 1500, 900], "label": "a lamp"}]', 1, "above 1000"),
        ("<|box_start|>(100,100),(300,400)<|box_end|>", 0, "no prompt"),
        ("a lamp <|box_start|>(100,100),(300,400)<|box_end|>", 1, "no ref label"),
        ("<|object_ref_start|>a lamp<|object_ref_end|><|box_start|>(1x0,100),(300,400)<|box_end|>", 0, "four numbers"),
        ("I like it.", 0, "no edits"),
        ("", 0, "empty answer"),
        ("x" * 200_000, 0, "truncated"),
    ],
)  # fmt: skip
def test_repairs_are_recorded(text, n_edits, repair):
    critique = parse_critique(text, (1024, 768))
    assert_valid(critique, text, (1024, 768))
    assert len(critique.edits) == n_edits
    assert any(repair in r for r in critique.repairs), critique.repairs


def test_max_edits_drop_is_recorded():
    text = stripped([((i * 100, 0, i * 100 + 50, 500), f"region {i}", "") for i in range(6)])
    critique = parse_critique(text, (512, 512), max_edits=4)
    assert [e.prompt for e in critique.edits] == [f"region {i}" for i in range(4)]
    assert any("max_edits=4" in r for r in critique.repairs)


@pytest.mark.parametrize("text", ["no changes", "No changes needed: the image matches the prompt.", '{"edits": []}'])
def test_no_changes_is_not_a_repair(text):
    critique = parse_critique(text, (512, 512))
    assert critique.edits == [] and critique.global_prompt is None and critique.repairs == []
    assert not critique.wants_changes


def test_issue_examples():
    text = (
        "The giraffe's face is muddy. <|object_ref_start|>the eyes on a giraffe<|object_ref_end|>"
        "<|box_start|>(176,106),(232,160)<|box_end|> and <|object_ref_start|>sharp hooves<|object_ref_end|>"
        "<|box_start|>( 300 , 700 ),( 420 , 990 )<|box_end|>\nGlobal prompt: a giraffe at golden hour"
    )
    critique = parse_critique(text, (1000, 500))
    assert [e.prompt for e in critique.edits] == ["the eyes on a giraffe", "sharp hooves"]
    assert critique.edits[0].box == Box(0.176, 0.106, 0.232, 0.16)
    assert critique.edits[1].box == Box(0.3, 0.7, 0.42, 0.99)
    assert critique.global_prompt == "a giraffe at golden hour"
    stripped_text = "the eyes on a giraffe(176,106),(232,160)"
    assert parse_critique(stripped_text, (1000, 500)).edits[0].box == critique.edits[0].box


def test_pixel_convention_without_processed_size_is_recorded():
    critique = parse_critique('[{"bbox_2d": [0, 0, 256, 128], "label": "sky"}]', (512, 256), convention="qwen2.5-vl")
    assert critique.edits[0].box == Box(0.0, 0.0, 0.5, 0.5)
    assert any("no processed_size" in r for r in critique.repairs)


@pytest.mark.parametrize(
    "kwargs",
    [{"image_size": (0, 10)}, {"image_size": (10,)}, {"image_size": (1.5, 2)}, {"convention": "qwen9"},
     {"max_edits": -1}, {"processed_size": (10, -1)}],
)  # fmt: skip
def test_bad_arguments_are_the_callers_error(kwargs):
    with pytest.raises(ValueError):
        parse_critique("no changes", **{"image_size": (64, 64), **kwargs})


@pytest.mark.parametrize("text", [None, b"\xff{", 12, ["a"]])
def test_non_text_answers_are_recorded(text):
    critique = parse_critique(text, (64, 64))
    assert_valid(critique, text, (64, 64))
    assert critique.repairs


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000, "{" * 100_000, "(1," * 40_000, "<|box_start|>" * 10_000, "a(1,2),(3,4)" * 10_000,
     '{"a":' * 30_000, "<|object_ref_start|>" + "x" * 99_000, "```" * 30_000],
)  # fmt: skip
def test_hostile_oversized_answers_are_parsed_in_linear_time(text):
    """No regex backtracks catastrophically: a quarter of the text takes about a quarter of the time. (Compared in
    the same run, so a loaded machine slows both; a quadratic parser would take 16 times as long, not 4.)"""

    def seconds(answer: str) -> float:
        start = time.perf_counter()
        critique = parse_critique(answer, (512, 512))
        assert_valid(critique, answer, (512, 512))
        return time.perf_counter() - start

    quarter = seconds(text[: len(text) // 4])
    assert seconds(text) < 10 * quarter + 0.25
