"""What an evaluation hands back: ``summary.json``, ``scores.jsonl`` and one self-contained ``report.html``.

``summarize`` turns the ledger's items and scores into the summary: per metric and condition the mean over prompts
with its bootstrap interval, the paired difference against the first condition with its interval, the win rate,
the per-tag accuracies (GenEval's categories; the overall score is their mean, as GenEval reports it), and per
condition the cost of a prompt: transformer passes, VLM calls and seconds. ``write_report`` renders it as HTML that
needs nothing but a browser: plots are inline SVG, images are embedded as data URLs, every text from elsewhere (a
prompt, an error) is escaped.
"""

from __future__ import annotations

import base64
import html
import io
import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from artaug.config import EvalConfig
from artaug.eval.ledger import Item, Score
from artaug.eval.stats import bootstrap_mean, compare, per_prompt
from artaug.files import atomic_write

COSTS = ("transformer_passes", "vlm_calls", "seconds")
MAX_LISTED_FAILURES = 200


def summarize(items: list[Item], scores: list[Score], conditions: list[str], config: EvalConfig) -> dict[str, Any]:
    """The summary of an evaluation (see the module docstring); ``conditions[0]`` is the reference."""
    tags = {(i.condition, i.prompt_id): i.meta.get("tag") for i in items if isinstance(i.meta.get("tag"), str)}
    present = {s.metric for s in scores}
    metrics = [m for m in config.metrics if m in present] + sorted(present - set(config.metrics))
    stats = {"resamples": config.resamples, "confidence": config.confidence, "seed": config.bootstrap_seed}
    summary: dict[str, Any] = {
        "reference": conditions[0] if conditions else None,
        "conditions": conditions,
        "prompts": len({i.prompt_id for i in items}),
        "paintings": len(items),
        "statistics": stats,
        "metrics": {},
        "cost": {c: _cost([i for i in items if i.condition == c]) for c in conditions},
    }
    for metric in metrics:
        rows = [s for s in scores if s.metric == metric and s.value is not None]
        failed = [s for s in scores if s.metric == metric and s.value is None]
        means = {c: per_prompt({(s.prompt_id, s.seed): s.value for s in rows if s.condition == c})
                 for c in conditions}  # fmt: skip
        table = {}
        for condition in conditions:
            estimate = bootstrap_mean(list(means[condition].values()), config.resamples, config.confidence,
                                      config.bootstrap_seed)  # fmt: skip
            paired = compare(means[conditions[0]], means[condition], config.resamples, config.confidence,
                             config.bootstrap_seed)  # fmt: skip
            table[condition] = {
                **estimate.to_dict(),
                "difference": paired.difference.to_dict(),
                "win_rate": paired.win_rate,
                "images": sum(s.condition == condition for s in rows),
                "failures": sum(s.condition == condition for s in failed),
                "categories": _categories(means[condition], {p: t for (c, p), t in tags.items() if c == condition}),
            }
        summary["metrics"][metric] = table
    failed = [s.to_dict() for s in scores if s.value is None] + [
        {"condition": i.condition, "prompt_id": i.prompt_id, "seed": i.seed, "metric": None, "error": i.error}
        for i in items if i.error
    ]  # fmt: skip
    summary["failures"] = {"count": len(failed), "first": failed[:MAX_LISTED_FAILURES]}
    return _finite_or_none(summary)


def _categories(means: dict[str, float], tags: dict[str, str]) -> dict[str, float]:
    """Per-tag mean of the prompts' scores and ``overall``, the mean over tags (GenEval's overall score)."""
    groups: dict[str, list[float]] = {}
    for prompt_id, value in means.items():
        if prompt_id in tags:
            groups.setdefault(tags[prompt_id], []).append(value)
    if not groups:
        return {}
    table = {tag: statistics.fmean(values) for tag, values in sorted(groups.items())}
    return {**table, "overall": statistics.fmean(table.values())}


def _cost(items: list[Item]) -> dict[str, Any]:
    """Mean cost of a prompt (its seeds averaged first); a cost nobody recorded is ``None``."""
    made = [i for i in items if i.error is None]
    out: dict[str, Any] = {"paintings": len(made), "failed": len(items) - len(made)}
    for key in COSTS:
        known = {(i.prompt_id, i.seed): float(i.cost[key]) for i in made if key in i.cost}
        out[f"{key}_per_prompt"] = statistics.fmean(per_prompt(known).values()) if known else None
    return out


def _finite_or_none(value: Any) -> Any:
    # JSON has no NaN: an undefined statistic (no prompt scored) is written as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------------- report.html

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 8px 0 20px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.better { background: #e5f5e0; } .worse { background: #fde0dd; }
.grid td { vertical-align: top; text-align: center; } .grid .prompt { text-align: left; max-width: 260px; }
.grid img { display: block; margin: auto; } small { color: #666; }
"""


def write_report(
    path: Path,
    summary: dict[str, Any],
    items: list[Item],
    scores: list[Score],
    image: Callable[[Item], Any],
    config: EvalConfig,
    title: str,
) -> Path:
    """Render ``report.html``; ``image(item)`` opens a painting (a failing one is shown as its error)."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{_e(title)}</h1>", _overview(summary)]  # fmt: skip
    for metric, table in summary["metrics"].items():
        parts.append(_metric_section(metric, table, summary))
    parts.append(_cost_section(summary))
    parts.append(_grid(summary["conditions"], items, scores, image, config))
    parts.append(_failures(summary))
    parts.append("</body></html>")
    return atomic_write(path, "\n".join(parts))


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def _interval(estimate: dict[str, Any]) -> str:
    return f"{_num(estimate['mean'])} <small>[{_num(estimate['low'])}, {_num(estimate['high'])}]</small>"


def _overview(summary: dict[str, Any]) -> str:
    s = summary["statistics"]
    return (
        f"<p>{summary['prompts']} prompts, {summary['paintings']} paintings, conditions: "
        f"{', '.join(_e(c) for c in summary['conditions'])}. Reference: <b>{_e(summary['reference'])}</b>. "
        f"Intervals: {s['confidence']:.0%} bootstrap percentile over prompts, {s['resamples']} resamples "
        f"(seed {s['seed']}); differences are paired by prompt; a win rate counts ties as one half.</p>"
    )


def _metric_section(metric: str, table: dict[str, Any], summary: dict[str, Any]) -> str:
    rows = ["<tr><th>condition</th><th>mean [interval]</th><th>difference vs reference [interval]</th>"
            "<th>win rate</th><th>prompts</th><th>failures</th></tr>"]  # fmt: skip
    for condition, row in table.items():
        diff = row["difference"]
        kind = "better" if (diff["low"] or 0) > 0 else "worse" if (diff["high"] or 0) < 0 else ""
        rows.append(
            f"<tr class='{kind}'><td>{_e(condition)}</td><td>{_interval(row)}</td><td>{_interval(diff)}</td>"
            f"<td>{_num(row['win_rate'], 3)}</td><td>{row['n']}</td><td>{row['failures']}</td></tr>"
        )
    tags = sorted({t for row in table.values() for t in row["categories"]} - {"overall"})
    categories = ""
    if tags:
        columns = [*tags, "overall"]
        head = "".join(f"<th>{_e(t)}</th>" for t in columns)
        body = "".join(
            f"<tr><td>{_e(c)}</td>" + "".join(f"<td>{_num(row['categories'].get(t), 3)}</td>" for t in columns)
            + "</tr>" for c, row in table.items()
        )  # fmt: skip
        categories = f"<table><tr><th>per tag</th>{head}</tr>{body}</table>"
    return f"<h2>{_e(metric)}</h2><table>{''.join(rows)}</table>{_forest(table)}{categories}"


def _forest(table: dict[str, Any]) -> str:
    """An inline SVG: each condition's paired difference as a dot with its interval, and the zero line."""
    rows = [(c, r["difference"]) for c, r in table.items() if r["difference"]["mean"] is not None]
    if not rows:
        return ""
    ends = [v for _, d in rows for v in (d["low"], d["high"], 0.0)]
    low, high = min(ends), max(ends)
    span = (high - low) or 1.0
    width, left, row_h = 520, 140, 22

    def x(value: float) -> float:
        return left + 10 + (value - low) / span * (width - left - 20)

    shapes = [f"<line x1='{x(0):.1f}' y1='0' x2='{x(0):.1f}' y2='{row_h * len(rows)}' stroke='#999' "
              "stroke-dasharray='3,3'/>"]  # fmt: skip
    for k, (condition, d) in enumerate(rows):
        y = row_h * k + row_h / 2
        shapes.append(f"<text x='0' y='{y + 4:.1f}' font-size='12'>{_e(condition)}</text>")
        shapes.append(
            f"<line x1='{x(d['low']):.1f}' y1='{y:.1f}' x2='{x(d['high']):.1f}' y2='{y:.1f}' stroke='#333'/>"
        )
        shapes.append(f"<circle cx='{x(d['mean']):.1f}' cy='{y:.1f}' r='4' fill='#3366cc'/>")
    height = row_h * len(rows)
    caption = f"<small>difference vs reference, axis {_num(low)} … {_num(high)}; dashed line: 0</small>"
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}'>{''.join(shapes)}</svg>{caption}"
    )


def _cost_section(summary: dict[str, Any]) -> str:
    head = "<tr><th>condition</th><th>transformer passes / prompt</th><th>VLM calls / prompt</th>" \
           "<th>seconds / prompt</th><th>paintings</th><th>failed</th></tr>"  # fmt: skip
    rows = "".join(
        f"<tr><td>{_e(c)}</td><td>{_num(v['transformer_passes_per_prompt'])}</td><td>{_num(v['vlm_calls_per_prompt'])}"
        f"</td><td>{_num(v['seconds_per_prompt'], 3)}</td><td>{v['paintings']}</td><td>{v['failed']}</td></tr>"
        for c, v in summary["cost"].items()
    )
    return f"<h2>cost</h2><table>{head}{rows}</table>"


def _grid(conditions: list[str], items: list[Item], scores: list[Score], image: Callable[[Item], Any],
          config: EvalConfig) -> str:  # fmt: skip
    """Per prompt, its first painting under every condition, side by side, with that painting's scores."""
    first: dict[tuple[str, str], Item] = {}
    order: list[str] = []
    for item in sorted(items, key=lambda i: i.seed):
        if item.prompt_id not in order:
            order.append(item.prompt_id)
        first.setdefault((item.prompt_id, item.condition), item)
    if config.report_prompts == 0 or not order:
        return ""
    by_key = {}
    for s in scores:
        by_key.setdefault((s.condition, s.prompt_id, s.seed), []).append(s)
    head = "<tr><th>prompt</th>" + "".join(f"<th>{_e(c)}</th>" for c in conditions) + "</tr>"
    rows = []
    for prompt_id in order[: config.report_prompts]:
        cells = []
        for condition in conditions:
            item = first.get((prompt_id, condition))
            cells.append(
                "<td>–</td>" if item is None else f"<td>{_cell(item, by_key.get(item.key, []), image, config)}</td>"
            )
        prompt = next(i.prompt for i in items if i.prompt_id == prompt_id)
        rows.append(f"<tr><td class='prompt'>{_e(prompt)}</td>{''.join(cells)}</tr>")
    shown = min(len(order), config.report_prompts)
    return f"<h2>paintings</h2><p><small>{shown} of {len(order)} prompts, first seed</small></p>" \
           f"<table class='grid'>{head}{''.join(rows)}</table>"  # fmt: skip


def _cell(item: Item, scores: list[Score], image: Callable[[Item], Any], config: EvalConfig) -> str:
    if item.error:
        return f"<small>{_e(item.error)}</small>"
    try:
        picture = image(item).convert("RGB")
    except (OSError, ValueError) as error:
        return f"<small>{_e(error)}</small>"
    picture.thumbnail((config.thumbnail, config.thumbnail))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    caption = "<br>".join(f"{_e(s.metric)} {_num(s.value)}" if s.value is not None else f"{_e(s.metric)} failed"
                          for s in scores)  # fmt: skip
    return f"<img src='data:image/jpeg;base64,{data}' alt='{_e(item.prompt)}'><small>{caption}</small>"


def _failures(summary: dict[str, Any]) -> str:
    failures = summary["failures"]
    if not failures["count"]:
        return ""
    cells = [
        (f["condition"], f["prompt_id"], f["seed"], f["metric"] or "painting", f["error"]) for f in failures["first"]
    ]
    rows = "".join("<tr>" + "".join(f"<td>{_e(value)}</td>" for value in row) + "</tr>" for row in cells)
    return (f"<h2>failures ({failures['count']})</h2><table><tr><th>condition</th><th>prompt</th><th>seed</th>"
            f"<th>metric</th><th>error</th></tr>{rows}</table>")  # fmt: skip
