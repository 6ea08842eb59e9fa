"""``artaug critique IMAGE --prompt TEXT --critic ID_OR_DIR_OR_URL``: what the critic would change, and where."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from artaug.cli.options import add_config_file_flags, add_config_flags, check_output, config_from_args

CRITIQUE_SETTINGS = (
    "critic.model",
    "critic.served_model",
    "critic.convention",
    "critic.template",
    "critic.max_edits",
    "critic.api_key_env",
    "critic.timeout",
    "critic.max_retries",
    "critic.max_new_tokens",
    "critic.device",
    "critic.dtype",
    "critic.cache_dir",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "critique",
        help="ask the critic VLM what to change in an image",
        description="Critique one image against its prompt: regional edits (box + desired end state + reason) and "
        "an optional rewritten global prompt, from an in-process Qwen-family VLM or an OpenAI-compatible endpoint.",
    )
    parser.add_argument("image", type=Path, metavar="IMAGE", help="the painting to critique")
    parser.add_argument("--prompt", required=True, help="the prompt the painting was made from")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="how to print the critique")
    parser.add_argument("--draw", type=Path, default=None, metavar="OUT.png", help="also draw the boxes onto a copy")
    add_config_file_flags(parser)
    add_config_flags(parser, CRITIQUE_SETTINGS, "critic settings (each is also a config field)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from artaug.critic import critic_from_config, draw_critique
    from artaug.files import atomic_write, open_image
    from artaug.types import MAX_PROMPT_CHARS

    # 1. Inputs, checked before the critic loads.
    config = config_from_args(args)
    if not args.prompt.strip() or len(args.prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"--prompt must be 1 to {MAX_PROMPT_CHARS} characters")
    image = open_image(args.image, what="image to critique")
    if args.draw is not None:
        check_output(args.draw)

    # 2. The critic (local, remote or notes), then the critique.
    critic = critic_from_config(config.critic)
    critique = critic.critique(image, args.prompt)
    print(json.dumps(critique.to_dict(), indent=2, ensure_ascii=False) if args.format == "json" else _text(critique))
    if args.draw is not None:
        drawn = draw_critique(image, critique)
        atomic_write(args.draw, lambda file: drawn.save(file, format="PNG"))
        print(f"drew the critique onto {args.draw}", file=sys.stderr)
    if critique.error:
        print(f"error: the critic gave no answer: {critique.error}", file=sys.stderr)
        return 1
    return 0


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
