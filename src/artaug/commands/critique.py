"""``artaug critique IMAGE --prompt TEXT --critic ID_OR_DIR_OR_URL``: what the critic would change, and where."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from artaug.critic.parse import CONVENTIONS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "critique",
        help="ask the critic VLM what to change in an image",
        description="Critique one image against its prompt: regional edits (box + desired end state + reason) and "
        "an optional rewritten global prompt, from an in-process Qwen-family VLM or an OpenAI-compatible endpoint.",
    )
    parser.add_argument("image", type=Path, metavar="IMAGE", help="the painting to critique")
    parser.add_argument("--prompt", required=True, help="the prompt the painting was made from")
    parser.add_argument(
        "--critic",
        default="Qwen/Qwen2-VL-7B-Instruct",
        help="hub id, local model folder, or base URL of an OpenAI-compatible endpoint (http://HOST:PORT/v1)",
    )
    parser.add_argument("--model", default=None, help="served model name (URL critics; default: the server's first)")
    parser.add_argument("--convention", choices=CONVENTIONS, default="auto", help="box convention of the answers")
    parser.add_argument("--template", default=None, help="instruction template: grounding, json, or a file path")
    parser.add_argument("--max-edits", type=int, default=4, help="at most this many regional edits")
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per endpoint request (URL critics)")
    parser.add_argument("--max-retries", type=int, default=3, help="retries on 429/5xx/connection failures (URLs)")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="tokens the critic may write")
    parser.add_argument("--device", default="auto", help="torch device of an in-process critic (auto: CUDA if any)")
    parser.add_argument("--dtype", default="auto", help="torch dtype of an in-process critic (auto: bf16 on CUDA)")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="how to print the critique")
    parser.add_argument("--draw", type=Path, default=None, metavar="OUT.png", help="also draw the boxes onto a copy")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from artaug.components import resolve_device, resolve_dtype
    from artaug.critic import draw_critique, is_url, load_critic

    # 1. Inputs.
    if not args.image.is_file():
        print(f"error: no image at {args.image}", file=sys.stderr)
        return 2
    image = Image.open(args.image)
    image.load()

    # 2. The critic, local or remote.
    options: dict = {"convention": args.convention, "max_edits": args.max_edits, "max_new_tokens": args.max_new_tokens}
    if args.template:
        options["template"] = args.template
    try:
        if is_url(args.critic):
            options.update(
                model=args.model, api_key_env=args.api_key_env, timeout=args.timeout, max_retries=args.max_retries
            )
        else:
            device = resolve_device(args.device)
            options.update(device=device, dtype=resolve_dtype(args.dtype, device))
        critic = load_critic(args.critic, **options)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    # 3. Critique, print, draw.
    critique = critic.critique(image, args.prompt)
    print(json.dumps(critique.to_dict(), indent=2, ensure_ascii=False) if args.format == "json" else _text(critique))
    if args.draw is not None:
        draw_critique(image, critique).save(args.draw)
        print(f"drew the critique onto {args.draw}", file=sys.stderr)
    return 1 if critique.error else 0


def _text(critique) -> str:
    lines = [f"critic {critique.model} ({critique.template_version}), {critique.seconds:.1f} s"]
    if critique.error:
        lines.append(f"FAILED: {critique.error}")
    for i, edit in enumerate(critique.edits, 1):
        b = edit.box
        lines.append(f"{i}. [{b.x0:.3f}, {b.y0:.3f}, {b.x1:.3f}, {b.y1:.3f}] {edit.prompt}")
        if edit.reason:
            lines.append(f"   reason: {edit.reason}")
    if critique.global_prompt:
        lines.append(f"global prompt: {critique.global_prompt}")
    if not critique.wants_changes and not critique.error:
        lines.append("no changes")
    lines += [f"repair: {r}" for r in critique.repairs]
    return "\n".join(lines)
