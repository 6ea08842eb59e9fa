import pytest
from PIL import Image

from artaug.critic import RecordedCritic, load_critic


def test_recorded_answers_are_parsed_in_order_then_no_changes(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text(
        "<|object_ref_start|>a calm blue sea<|object_ref_end|><|box_start|>(0,500),(1000,1000)<|box_end|>\n"
        "---\n\n---\n"
        '{"edits": [], "global_prompt": "the same scene at night"}\n'
    )
    critic = load_critic(str(notes), max_edits=2, dtype="ignored")
    assert isinstance(critic, RecordedCritic) and critic.template_version.startswith("recorded@")
    image = Image.new("RGB", (200, 100))
    first, second, third = (critic.critique(image, "a beach") for _ in range(3))
    assert [e.prompt for e in first.edits] == ["a calm blue sea"]
    assert (first.edits[0].box.y0, first.edits[0].box.y1) == (0.5, 1.0) and first.image_size == (200, 100)
    assert second.global_prompt == "the same scene at night" and not second.edits
    assert not third.wants_changes and third.raw == "no changes"
    assert first.model == str(notes)


def test_an_empty_notes_file_is_an_error(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n---\n")
    with pytest.raises(ValueError, match="holds no critic answers"):
        RecordedCritic.from_file(empty)
