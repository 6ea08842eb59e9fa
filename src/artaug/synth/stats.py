"""``artaug synth stats DIR``: kept and dropped pairs by reason, and histograms of the score deltas."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from artaug.files import atomic_write
from artaug.synth.filters import drop_reasons
from artaug.synth.store import PairRecord, Store


@dataclass
class SynthStats:
    counts: dict[str, int]
    dropped_by_reason: Counter = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)
    deltas: dict[str, list[tuple[float, bool]]] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    reviews: dict[str, int] = field(default_factory=dict)

    def format(self) -> str:
        c = self.counts
        lines = [
            f"prompts {c['prompts']}: done {c['done']}, failed {c['failed']}, pending {c['pending']}"
            + (f" ({c['leased']} leased now)" if c["leased"] else ""),
            f"pairs {c['pairs']}: kept {c['kept']}, dropped {c['pairs'] - c['kept']}",
        ]
        if any(self.reviews.values()):
            accepted, rejected = self.reviews["accepted"], self.reviews["rejected"]
            lines.append(f"reviewed by a person: {accepted} accepted, {rejected} rejected")
        if self.dropped_by_reason:
            lines.append("dropped by reason (a pair may fail several filters):")
            width = max(len(r) for r in self.dropped_by_reason)
            lines += [f"  {r:<{width}}  {n}" for r, n in self.dropped_by_reason.most_common()]
        if self.failures:
            lines.append("failed prompts:")
            lines += [f"  {pid}: {err}" for pid, err in self.failures[:20]]
            if len(self.failures) > 20:
                lines.append(f"  ... and {len(self.failures) - 20} more")
        for key, values in sorted(self.deltas.items()):
            v = [x for x, _ in values]
            lines.append(f"{key}: n={len(v)} mean={sum(v) / len(v):+.4f} min={min(v):+.4f} max={max(v):+.4f}")
        return "\n".join(lines)


def collect(store_dir: str | Path) -> SynthStats:
    with Store(store_dir, readonly=True) as store:
        stats = SynthStats(counts=store.counts(), reviews=store.review_counts())
        pairs = store.pairs()
        stats.failures = [(r["prompt_id"], r["error"] or "") for r in store.results() if r["status"] == "failed"]
    for pair in pairs:
        if not pair.kept:
            stats.dropped_by_reason.update(drop_reasons(pair.meta.get("filters", [])))
        for key, value in _plotted(pair).items():
            stats.deltas.setdefault(key, []).append((value, pair.kept))
        stats.thresholds.update(pair.meta.get("thresholds", {}))  # the latest run's thresholds win
    return stats


def _plotted(pair: PairRecord) -> dict[str, float]:
    # Score deltas (after - before) and the image-image similarity: the quantities the filters threshold.
    return {k: float(v) for k, v in pair.scores.items() if k.endswith(".delta") or k == "similarity"}


def plot(stats: SynthStats, path: str | Path) -> Path:
    """Write one histogram per plotted quantity (kept and dropped stacked) to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(stats.deltas) or ["(no scored pairs)"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        values = stats.deltas.get(key, [])
        kept = [v for v, k in values if k]
        dropped = [v for v, k in values if not k]
        if values:
            ax.hist([kept, dropped], bins=20, stacked=True, label=["kept", "dropped"], color=["#2a9d8f", "#e76f51"])
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no scores", ha="center", va="center", transform=ax.transAxes)
        if key in stats.thresholds:
            ax.axvline(stats.thresholds[key], color="black", linestyle="--", linewidth=1)
        ax.set_title(key + (f" (threshold {stats.thresholds[key]:g})" if key in stats.thresholds else ""), fontsize=10)
        ax.set_ylabel("pairs")
    fig.tight_layout()
    try:
        atomic_write(path, lambda file: fig.savefig(file, format="png", dpi=100))
    finally:
        plt.close(fig)
    return Path(path)
