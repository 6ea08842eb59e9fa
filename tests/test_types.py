import json
import math

import pytest

from artaug.types import Box, Cost, Critique, Edit, PaintRequest, Round, Trail


def _round_trip(obj):
    return type(obj).from_dict(json.loads(json.dumps(obj.to_dict())))


@pytest.mark.parametrize(
    "coords",
    [(0.5, 0.1, 0.4, 0.9), (0.1, 0.5, 0.9, 0.5), (-0.1, 0.0, 0.5, 0.5), (0.0, 0.0, 1.01, 1.0), (math.nan, 0, 1, 1)],
)
def test_invalid_boxes_are_refused(coords):
    with pytest.raises(ValueError, match="box"):
        Box(*coords)


def test_box_pixels_round_outwards():
    box = Box.from_pixels(10, 20, 30, 40, width=64, height=128)
    assert box.to_pixels(64, 128) == (10, 20, 30, 40)
    assert Box(0.01, 0.01, 0.02, 0.02).to_pixels(64, 64) == (0, 0, 2, 2)


def test_edit_needs_prompt_and_positive_finite_weight():
    with pytest.raises(ValueError, match="local prompt"):
        Edit(Box(0, 0, 1, 1), "  ")
    for weight in (0, -1, float("nan"), float("inf"), True, "3"):
        with pytest.raises(ValueError, match="weight"):
            Edit(Box(0, 0, 1, 1), "sky", weight=weight)
    # trails written before the rename still read
    assert Edit.from_dict({"box": Box(0, 0, 1, 1).to_dict(), "prompt": "sky", "strength": 3.0}).weight == 3.0


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"prompt": ""}, "prompt"),
        ({"strength": 0.0}, "strength"),
        ({"regional": "magic"}, "regional"),
        ({"guidance_scale": float("nan")}, "guidance_scale must be a finite number"),
        ({"guidance_scale": -1.0}, "guidance_scale"),
        ({"seed": -1}, "seed"),
        ({"height": 64.0}, "height must be an integer"),
        ({"prompt": "x" * 5000}, "at most 4000"),
        ({"edits": (Edit(Box(0, 0, 1, 1), "sky"),) * 17}, "at most 16"),
    ],
)
def test_paint_request_validates(changes, message):
    with pytest.raises(ValueError, match=message):
        PaintRequest(**{"prompt": "a cat", **changes})


def test_everything_round_trips_through_json():
    edit = Edit(Box(0.1, 0.2, 0.5, 0.6), "golden rim light on the couple", reason="flat light", label="couple")
    request = PaintRequest("a couple at sunset", seed=7, height=512, width=768, edits=(edit,), strength=0.4)
    critique = Critique(
        edits=[edit],
        global_prompt="at golden hour",
        raw="<raw>",
        convention="qwen2-vl",
        repairs=["clamped"],
        image_size=(768, 512),
    )
    record = Round(
        index=1, critique=critique, request=request, scores={"aesthetic": 5.0}, accepted=True, cost=Cost(10, 5, 1.5)
    )
    trail = Trail(
        "a couple at sunset",
        request.replace(edits=(), strength=1.0),
        rounds=[record],
        best=1,
        first_cost=Cost(28, 28, 3.0),
    )
    assert _round_trip(edit) == edit
    assert _round_trip(request) == request
    assert _round_trip(critique) == critique
    assert _round_trip(record).to_dict() == record.to_dict()
    restored = _round_trip(trail)
    assert restored.to_dict() == trail.to_dict()
    assert restored.total_cost == Cost(38, 33, 4.5)
    relative = trail.to_dict()["cost_relative_to_first"]
    assert relative["rounds"]["1"] == {"transformer_passes": 10 / 28, "seconds": 0.5}
    assert relative["total"]["transformer_passes"] == 38 / 28
