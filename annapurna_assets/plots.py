"""The training-curve plot stored with every run."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def training_curve_png(metrics: list[dict[str, Any]], title: str) -> bytes | None:
    """Loss (and accuracy where reported) against step; None when there is nothing to draw."""
    points = [m for m in metrics if not m.get("final") and isinstance(m.get("loss"), int | float)]
    if not points:
        return None
    xs = [m.get("step", i) for i, m in enumerate(points)]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(xs, [m["loss"] for m in points], marker="o", label="train loss")
    if any(isinstance(m.get("test_loss"), int | float) for m in points):
        ax.plot(xs, [m.get("test_loss") for m in points], marker="s", label="test loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title[:80], fontsize=9)
    if any(isinstance(m.get("accuracy"), int | float) for m in points):
        ax2 = ax.twinx()
        ax2.plot(xs, [m.get("accuracy") for m in points], color="tab:green", linestyle="--", label="accuracy")
        ax2.set_ylabel("accuracy")
        ax2.set_ylim(0, 1)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
