"""The studio in a real browser: Debian's chromium, driven by Playwright, against the real app on the tiny painter.

A person types a prompt, paints, asks the critic, drags a new box, types what it should become, repaints and accepts;
then the pair is in the store with that box and provenance ``person``, the run folder replays with ``artaug replay``,
and the Review tab takes a verdict from the keyboard. Every step leaves a screenshot under the test's tmp folder,
copied to ``runs/studio-screenshots/`` (ignored by git) to look at.
"""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

import pytest

from artaug.cli import main
from artaug.config import load_config
from artaug.studio import Studio
from artaug.studio.app import serve
from artaug.synth.store import Store
from artaug.types import Box, Edit

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run",
]  # fmt: skip
SCREENSHOTS = Path(__file__).resolve().parents[1] / "runs" / "studio-screenshots"
NOTES = str(files("artaug") / "data" / "demo_critique.txt")
SHOWN = 512  # the editor shows the 128 px painting enlarged 4x
MOON = (300, 60, 470, 200)  # the new box, in the editor's pixels


@pytest.fixture
def studio_url(tmp_path, tiny_painter_dir):
    config = load_config(
        presets={
            "painter.model": str(tiny_painter_dir), "painter.device": "cpu", "critic.model": NOTES,
            "painter.height": 128, "painter.width": 128, "painter.num_inference_steps": 4,
            "painter.max_sequence_length": 16, "loop.region_max_sequence_length": 16, "studio.port": 0,
            "studio.output": str(tmp_path / "runs"), "studio.store": str(tmp_path / "pairs"),
        }
    )  # fmt: skip
    studio = Studio.load(config)
    app, url = serve(studio, block=False, quiet=True)
    yield studio, url
    app.close()


def test_paint_critique_draw_repaint_accept_review_in_chromium(studio_url, tmp_path):
    assert CHROMIUM.is_file(), "Debian's chromium is missing: `make setup` installs it (apt-get install chromium)"
    from playwright.sync_api import sync_playwright

    studio, url = studio_url
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        step = _stepper(page, shots)
        try:
            # 1. type a prompt and paint
            page.goto(url)
            page.wait_for_selector("#prompt textarea")
            page.fill("#prompt textarea", "a red fox in the snow at golden hour")
            page.click("#paint-btn")
            _wait_for_text(page, "#status", "Painted")
            step("01-painted")

            # 2. ask the critic: its two boxes appear on the painting
            page.click("#critique-btn")
            _wait_for_text(page, "#status", "asks for 2 change(s)")
            step("02-critique")

            # 3. drag a new box on the canvas and type what it should become
            point = _canvas_point(page)
            page.mouse.move(*point(MOON[0], MOON[1]))
            page.mouse.down()
            page.mouse.move(*point(MOON[2] - 40, MOON[3] - 40), steps=5)
            page.mouse.move(*point(MOON[2], MOON[3]), steps=5)
            page.mouse.up()
            label = page.locator("#editor input[role=listbox]:visible").first
            label.wait_for(state="visible", timeout=90_000)  # a loaded 2-core machine can take long to draw it
            label.click()
            label.fill("a pale crescent moon")
            step("03-drawn-box-and-label")
            label.press("Enter")
            page.wait_for_timeout(300)
            step("04-labelled")

            # 4. repaint exactly the boxes on screen: before/after and the judge's verdict
            page.click("#repaint-btn")
            _wait_for_text(page, "#status", "accept or reject")
            _wait_for_text(page, "#verdict", "The judge accepts")
            step("05-repainted")

            # 5. accept: the round joins the history, the pair joins the store
            page.click("#accept-btn")
            _wait_for_text(page, "#status", "provenance person")
            _wait_for_text(page, "#history", "round 1: accepted, 3 box(es) by the person")
            step("06-accepted")

            # the pair: the moon's box exactly as dragged, made and accepted by the person
            with Store(studio.store, readonly=True) as store:
                (pair,) = store.pairs()
            assert pair.provenance == "person" and pair.review["verdict"] == "accepted" and pair.accepted
            boxes = {e.prompt: e.box for e in map(Edit.from_dict, pair.meta["edits"])}
            assert boxes["a pale crescent moon"] == Box(*(v / SHOWN for v in MOON))
            assert len(boxes) == 3 and pair.meta["critic"] == "person"

            # 6. review the store with the keyboard: R rejects the pair shown, committed to the ledger
            page.get_by_role("tab", name="Review pairs").click()
            page.click("#review-reload")
            _wait_for_text(page, "#review-info", "Pair 1 of 1")
            step("07-review")
            page.locator("body").click(position={"x": 5, "y": 5})
            page.keyboard.press("r")
            _wait_for_text(page, "#review-status", "rejected")
            step("08-review-rejected-with-R")
        except Exception:
            step("failure")
            raise
        finally:
            browser.close()

    with Store(studio.store, readonly=True) as store:
        assert store.review_counts() == {"accepted": 0, "rejected": 1}
    # 7. the run folder is what `artaug paint` writes, and `artaug replay` re-renders it pixel for pixel
    (folder,) = [p for p in studio.output.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert main(["replay", str(folder / "trail.json")]) == 0

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for shot in shots.iterdir():
        shutil.copy2(shot, SCREENSHOTS / shot.name)
    assert len(list(shots.glob("0*.png"))) == 8


def _stepper(page, folder: Path):
    def step(name: str) -> None:
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)

    return step


def _wait_for_text(page, selector: str, text: str, timeout: float = 60_000) -> None:
    page.wait_for_function(
        "([sel, text]) => { const e = document.querySelector(sel); return e && e.innerText.includes(text); }",
        arg=[selector, text],
        timeout=timeout,
    )


def _canvas_point(page):
    """A function from the editor image's pixels to page coordinates (the image is fitted and centred)."""
    box = page.locator("#editor canvas").first.bounding_box()
    scale = min(box["width"] / SHOWN, box["height"] / SHOWN)
    left = box["x"] + (box["width"] - SHOWN * scale) / 2
    top = box["y"] + (box["height"] - SHOWN * scale) / 2
    return lambda px, py: (left + px * scale, top + py * scale)
