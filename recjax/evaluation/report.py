"""The evaluation report: `metrics.json`, a readable `report.md` and `metrics.png` in one directory.

    write_report(out_dir, results, info)   # results: list[evaluation.TaskResult]

metrics.json:  {"info": {...run facts...}, "tasks": {task: {"kind", "metrics", "num_examples",
               "seconds", "curves"}}}
report.md:     one table per task, the run facts, the plot.
metrics.png:   per task: Hit@k (k = 1..top_k) for retrieval, HR@k for ranking, the expected
               rating per true rating for rating.
Each file is written to a temporary name and renamed, so a reader never sees half a file.
"""
from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from recjax import predictions
from recjax.data.atomic import atomic_write

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
PLOT_FILE = "metrics.png"

# Column order of the tables (others follow alphabetically).
_ORDER = ["hit@5", "hit@10", "hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10", "rmse", "mae", "valid_id_rate",
          "generated_rmse", "generated_mae", "generated_parse_rate", "num_users", "num_examples"]


def metrics_document(results: Sequence[Any], info: Mapping[str, Any]) -> dict:
    return {"info": dict(info),
            "tasks": {r.task: {"kind": r.kind, "metrics": dict(r.metrics), "num_examples": r.num_examples,
                               "seconds": round(r.seconds, 3), "curves": dict(r.curves)} for r in results}}


def _format(name: str, value: float) -> str:
    return f"{int(value):,}" if name.startswith("num_") else f"{value:.4f}"


def markdown(results: Sequence[Any], info: Mapping[str, Any], plot: bool) -> str:
    lines = [f"# Evaluation: {info.get('mixture_or_task', '')} ({info.get('split', '')})", ""]
    facts = [(k, v) for k, v in info.items() if not isinstance(v, (dict, list))]
    lines += [f"- {k}: `{v}`" for k, v in facts]
    lines.append("")
    for r in results:
        names = [k for k in _ORDER if k in r.metrics] + sorted(k for k in r.metrics if k not in _ORDER)
        lines += [f"## {r.task} ({r.kind})", "",
                  "| " + " | ".join(names) + " |", "|" + "---|" * len(names),
                  "| " + " | ".join(_format(k, r.metrics[k]) for k in names) + " |", "",
                  f"{r.num_examples:,} examples in {r.seconds:.1f} s "
                  f"({r.num_examples / max(r.seconds, 1e-9):.1f} examples/s)."]
        if r.kind == "rating":
            lines.append("rmse/mae: the expected rating sum_r r p(r) over the targets \"1\"..\"5\"; "
                         "generated_*: the greedily generated rating (unparsable -> 3).")
        if r.kind == "retrieval":
            lines.append("Hit/NDCG over all items from the top-k of constrained beam search "
                         "(history items excluded); valid_id_rate: share of returned IDs that exist.")
        lines.append("")
    if plot:
        lines += [f"![metrics]({PLOT_FILE})", ""]
    return "\n".join(lines)


def plot(results: Sequence[Any], path: str) -> bool:
    """Writes the PNG; False when there is nothing to plot."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [r for r in results if r.curves or r.kind == "rating"]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, r in zip(axes[0], panels):
        if r.kind == "rating" and "expected" in r.extra:
            true, expected = np.asarray(r.extra["true"]), np.asarray(r.extra["expected"])
            levels = sorted(set(true.tolist()))
            ax.boxplot([expected[true == v] for v in levels], positions=levels, widths=0.5)
            ax.plot([1, 5], [1, 5], "k:", linewidth=1)
            ax.set_xlabel("true rating")
            ax.set_ylabel("expected rating")
        else:
            name, curve = next(iter(r.curves.items()))
            ks = np.arange(1, len(curve) + 1)
            ax.plot(ks, curve, marker="." if len(curve) <= 30 else None)
            ax.set_xlabel("k")
            ax.set_ylabel(name.replace("@k", "@k"))
            ax.set_ylim(0, max(1e-3, max(curve)) * 1.1)
            ax.grid(alpha=0.3)
        ax.set_title(r.task)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, buffer.getvalue())
    return True


def write_report(out_dir: str, results: Sequence[Any], info: Mapping[str, Any]) -> dict[str, str]:
    """Writes metrics.json, report.md and metrics.png into out_dir; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {"metrics": os.path.join(out_dir, METRICS_FILE), "report": os.path.join(out_dir, REPORT_FILE)}
    atomic_write(paths["metrics"], (json.dumps(metrics_document(results, info), indent=2) + "\n").encode())
    has_plot = plot(results, os.path.join(out_dir, PLOT_FILE))
    if has_plot:
        paths["plot"] = os.path.join(out_dir, PLOT_FILE)
    atomic_write(paths["report"], markdown(results, info, has_plot).encode())
    return paths


def write_predictions(path: str, results: Sequence[Any]) -> int:
    """The prediction rows (`recjax.predictions`) of every evaluated example of the retrieval and
    ranking tasks of `results`, written atomically; returns the count."""
    return predictions.write_predictions(path, ({"task": r.task, "kind": r.kind, **row} for r in results
                                                for row in r.extra.get("predictions", ())))
