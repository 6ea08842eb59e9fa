"""The studio's page (Gradio 6) and its server: layout, wiring, queue and the safety rules of ``artaug studio``.

- **One painter.** Painting, critiquing and repainting share one queue slot (``concurrency_id="painter"``, limit 1):
  a second tab waits its turn; reviewing pairs and cancelling run beside it, so the page stays responsive.
- **Safe by default.** It listens on 127.0.0.1; any other address needs a login (``--auth USER:PASSWORD`` or the
  variable ``studio.auth_env`` names), and the log says so. It serves only its own folders (the run folders under
  ``studio.output`` and the store's images) and Gradio's cache, which lives under ``studio.output``; uploads are
  bounded by ``studio.max_upload_mb`` and read with ``artaug.files.open_image``. API keys stay in the server's
  environment: the page never holds one (the config names the variable, not its value).
"""

from __future__ import annotations

import os
from typing import Any

import gradio as gr
from gradio_image_annotation import image_annotator

from artaug.studio.handlers import Handlers, StudioError
from artaug.studio.session import Studio
from artaug.types import REGIONAL_MODES

LOOPBACK = ("127.0.0.1", "localhost", "::1")
PAINTER = "painter"  # the queue slot every job on the models shares
# Review with the keyboard: A accepts, R rejects, arrows (or J/K) move; ignored while typing in a field.
KEYS_JS = """
() => {
  document.addEventListener("keydown", (event) => {
    const tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || event.target.isContentEditable) return;
    const panel = document.getElementById("review-accept");
    if (!panel || panel.offsetParent === null) return;
    const ids = {a: "review-accept", r: "review-reject", arrowright: "review-next", j: "review-next",
                 arrowleft: "review-prev", k: "review-prev"};
    const id = ids[event.key.toLowerCase()];
    if (id) { event.preventDefault(); document.getElementById(id).click(); }
  });
}
"""
CSS = "#status, #review-status {min-height: 1.5em} .studio-note {opacity: 0.8; font-size: 0.9em}"


def build_app(studio: Studio) -> gr.Blocks:
    """The studio's page: Paint (paint, critique, repaint, decide, history) and Review pairs."""
    h = Handlers(studio)
    config = studio.config
    critic = studio.components.critic
    with gr.Blocks(title="artaug studio", analytics_enabled=False) as app:
        gr.Markdown(
            f"## artaug studio\nPainter `{studio.components.painter.model_id}` · critic "
            f"`{getattr(critic, 'model_id', 'none: you are the client')}` · runs in `{studio.output}` · store "
            f"`{studio.store}`"
        )
        with gr.Tabs():
            with gr.Tab("Paint", id="paint"):
                with gr.Row():
                    with gr.Column(scale=2, min_width=320):
                        prompt = gr.Textbox(label="Prompt", lines=2, elem_id="prompt")
                        with gr.Row():
                            seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, elem_id="seed")
                            steps = gr.Slider(1, 100, value=config.painter.num_inference_steps, step=1, label="Steps")
                        with gr.Row():
                            width = gr.Slider(64, 2048, value=config.painter.width, step=16, label="Width")
                            height = gr.Slider(64, 2048, value=config.painter.height, step=16, label="Height")
                        with gr.Row():
                            paint_btn = gr.Button("Paint", variant="primary", elem_id="paint-btn")
                            cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel-btn")
                        upload = gr.File(label="Open the settings of an artaug PNG", file_types=[".png"], height=80)
                        gr.Markdown("#### Critique and repaint")
                        critique_btn = gr.Button(
                            "Ask the critic", elem_id="critique-btn", interactive=studio.has_critic
                        )
                        revision_prompt = gr.Textbox(
                            label="Revision prompt (optional: a new prompt for the whole image)", elem_id="revision"
                        )
                        with gr.Row():
                            regional = gr.Radio(list(REGIONAL_MODES), value=config.loop.regional, label="Regional")
                            strength = gr.Slider(0.05, 1.0, value=config.loop.strength, step=0.05, label="Strength")
                        repaint_btn = gr.Button("Repaint the boxes", variant="primary", elem_id="repaint-btn")
                        status = gr.Markdown(elem_id="status")
                    with gr.Column(scale=3, min_width=400):
                        editor = image_annotator(
                            label="Painting: C draws a box, D drags; a box's label is what that region should become",
                            image_type="pil", sources=[], show_clear_button=False, show_remove_button=True,
                            box_min_size=4, height=520, elem_id="editor",
                        )  # fmt: skip
                        download = gr.DownloadButton("Download the best painting (PNG)", elem_id="download-best")
                with gr.Row():
                    before = gr.Image(label="Before", type="pil", interactive=False, height=320, elem_id="before")
                    after = gr.Image(label="After", type="pil", interactive=False, height=320, elem_id="after")
                    with gr.Column():
                        verdict = gr.Markdown(elem_id="verdict")
                        with gr.Row():
                            accept_btn = gr.Button("Accept", variant="primary", elem_id="accept-btn")
                            reject_btn = gr.Button("Reject", variant="stop", elem_id="reject-btn")
                with gr.Accordion("History of this run", open=True), gr.Row():
                    with gr.Column():
                        rounds = gr.Radio([], label="Rounds", elem_id="history")
                        round_info = gr.Markdown(elem_id="round-info")
                        round_png = gr.DownloadButton("Download this round's PNG", elem_id="download-round")
                    round_image = gr.Image(label="Round", type="pil", interactive=False, height=320)
            with gr.Tab("Review pairs", id="review"):
                gr.Markdown(
                    f"Pairs of `{studio.store}`. **A** accepts, **R** rejects, **←/→** move. A verdict is committed "
                    "to the store's ledger; exports and training leave rejected pairs out.",
                    elem_classes="studio-note",
                )
                position = gr.State(0)
                with gr.Row():
                    review_before = gr.Image(label="Before", type="pil", interactive=False, height=360)
                    review_after = gr.Image(label="After, with its boxes", type="pil", interactive=False, height=360)
                review_info = gr.Markdown(elem_id="review-info")
                with gr.Row():
                    prev_btn = gr.Button("← Previous", elem_id="review-prev")
                    review_accept = gr.Button("Accept (A)", variant="primary", elem_id="review-accept")
                    review_reject = gr.Button("Reject (R)", variant="stop", elem_id="review-reject")
                    next_btn = gr.Button("Next →", elem_id="review-next")
                    reload_btn = gr.Button("Reload", elem_id="review-reload")
                review_status = gr.Markdown(elem_id="review-status")
            with gr.Tab("Settings", id="settings"):
                gr.Code(_settings_text(studio), language=None, label="Resolved config (read-only)", interactive=False)

        # -- wiring: jobs on the models share one queue slot; the rest runs beside them
        on_painter = {"concurrency_id": PAINTER, "concurrency_limit": 1}
        history = [rounds]

        def paint(prompt, seed, width, height, steps, request: gr.Request, progress=gr.Progress()):  # noqa: B008
            return _page(h.paint, prompt, seed, width, height, steps, request, progress)

        def critique(editor, request: gr.Request):
            return _page(h.critique, editor, request)

        def repaint(editor, revision, regional, strength, request: gr.Request, progress=gr.Progress()):  # noqa: B008
            return _page(h.repaint, editor, revision, regional, strength, request, progress)

        def decide_accept(request: gr.Request):
            return _page(h.decide, True, request)

        def decide_reject(request: gr.Request):
            return _page(h.decide, False, request)

        def show_round(choice, request: gr.Request):
            return _page(h.show_round, choice, request)

        def cancel(request: gr.Request):
            return h.cancel(request)

        painted = paint_btn.click(
            paint, [prompt, seed, width, height, steps], [editor, status, *history, download], **on_painter
        )
        critiqued = critique_btn.click(critique, [editor], [editor, revision_prompt, status], **on_painter)
        repainted = repaint_btn.click(
            repaint, [editor, revision_prompt, regional, strength], [before, after, verdict, status], **on_painter
        )
        cancel_btn.click(cancel, None, status, queue=False, cancels=[painted, critiqued, repainted])
        decided = [editor, status, *history, download]
        for button, decide in ((accept_btn, decide_accept), (reject_btn, decide_reject)):
            button.click(decide, None, decided, **on_painter)
        rounds.change(show_round, [rounds], [round_image, round_info, round_png])
        upload.upload(lambda path: _page(h.open_png, path), [upload], [prompt, seed, width, height, steps, status])

        shown = [review_before, review_after, review_info, position]
        app.load(lambda: _page(h.review_show, 0), None, shown)
        reload_btn.click(lambda p: _page(h.review_show, p), [position], shown)
        prev_btn.click(lambda p: _page(h.review_show, p, -1), [position], shown)
        next_btn.click(lambda p: _page(h.review_show, p, +1), [position], shown)
        review_accept.click(lambda p: _page(h.review_decide, p, "accepted"), [position], [*shown, review_status])
        review_reject.click(lambda p: _page(h.review_decide, p, "rejected"), [position], [*shown, review_status])
    return app


def check_host(host: str, auth: tuple[str, str] | None) -> None:
    """Refuse to listen beyond this machine without a login; ``ValueError`` says how to give one."""
    if host not in LOOPBACK and auth is None:
        raise ValueError(
            f"studio.host {host} is reachable from other machines: give a login with --auth USER:PASSWORD or the "
            "variable named by studio.auth_env (default ARTAUG_STUDIO_AUTH=USER:PASSWORD), or listen on 127.0.0.1"
        )


def parse_auth(text: str | None, where: str) -> tuple[str, str] | None:
    """``USER:PASSWORD`` → ``(user, password)``; None for no text."""
    if not text:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ValueError(f"{where} must look like USER:PASSWORD (both non-empty)")
    return user, password


def serve(
    studio: Studio, *, auth: tuple[str, str] | None = None, block: bool = True, quiet: bool = False
) -> tuple[gr.Blocks, str]:
    """Start the studio's server (``studio.host``/``studio.port``); returns the app and its URL."""
    settings = studio.config.studio
    check_host(settings.host, auth)
    # Gradio's cache (uploads, files handed to the page) lives in the studio's own output folder.
    cache = studio.output / ".gradio"
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(cache)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    app = build_app(studio)
    app.queue(max_size=settings.max_queue, default_concurrency_limit=1)
    _, url, _ = app.launch(
        server_name=settings.host,
        server_port=settings.port or _free_port(settings.host),
        auth=auth,
        prevent_thread_lock=True,
        allowed_paths=[str(studio.output), str(studio.store / "images")],
        max_file_size=f"{settings.max_upload_mb:g}mb",
        show_error=True,
        quiet=True,
        ssr_mode=False,
        pwa=False,
        mcp_server=False,
        enable_monitoring=False,
        footer_links=[],
        js=KEYS_JS,
        css=CSS,
    )
    if not quiet:
        login = f"with a login (user {auth[0]})" if auth else "without a login (loopback only)"
        print(f"studio: listening on {settings.host}:{app.server_port} {login}", flush=True)
        print(f"studio: {url}", flush=True)
    if block:
        app.block_thread()
    return app, url


def _page(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except StudioError as error:
        raise gr.Error(str(error), print_exception=False) from None


def _settings_text(studio: Studio) -> str:
    import tomli_w

    return tomli_w.dumps(studio.config.to_dict())


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
