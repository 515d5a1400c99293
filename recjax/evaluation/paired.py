"""Paired comparison of two runs on the same users (what `recjax compare` prints): per task and
metric, the means under A and B, the difference B - A with a paired bootstrap 95% interval and
two-sided p-value, and McNemar's exact test for hit@k / hr@k. Rows come from prediction files
(`recjax.predictions`); runs with different item-ID schemes are matched by `target_original_id`.
"""
from __future__ import annotations

import io

import numpy as np

from recjax.data.atomic import atomic_write
from recjax.metrics import per_user_from_ranks
from recjax.predictions import kind_of


def paired_bootstrap(a: np.ndarray, b: np.ndarray, samples: int = 10_000, seed: int = 0) -> dict:
    """Mean of b - a over users, its percentile 95% interval and two-sided p-value over
    `samples` paired resamples of the users."""
    diff = np.asarray(b, np.float64) - np.asarray(a, np.float64)  # [users]
    rng = np.random.default_rng(seed)
    n = len(diff)
    means = np.empty(samples)
    for start in range(0, samples, 1000):  # [1000, n] index blocks keep memory bounded
        idx = rng.integers(n, size=(min(1000, samples - start), n))
        means[start:start + len(idx)] = diff[idx].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    p = min(1.0, 2 * min((means <= 0).mean(), (means >= 0).mean())) if diff.any() else 1.0
    return {"diff": float(diff.mean()), "ci_low": float(low), "ci_high": float(high), "p_bootstrap": float(p)}


def mcnemar(a_hit: np.ndarray, b_hit: np.ndarray) -> dict:
    """Exact McNemar test: binomial on the discordant users (A hits, B misses) vs (B hits, A misses)."""
    from scipy.stats import binomtest

    only_a = int(((a_hit > 0) & (b_hit == 0)).sum())
    only_b = int(((b_hit > 0) & (a_hit == 0)).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"only_a": only_a, "only_b": only_b, "p_mcnemar": float(p)}


def compare(a: dict, b: dict, samples: int = 10_000, seed: int = 0, metrics=None) -> list[dict]:
    """One row per (task, metric) over the users of each task present in both; `metrics` (names)
    keeps only those (each bootstrap has its own seeded draws, so a row is the same either way)."""
    tasks = sorted(set(a) & set(b))
    if not tasks:
        raise ValueError(f"no task in common (A: {', '.join(sorted(a))}; B: {', '.join(sorted(b))})")
    rows = []
    for task in tasks:
        users = sorted(set(a[task]) & set(b[task]))
        if not users:
            raise ValueError(f"{task}: no user in common")
        key = "target_original_id" if all("target_original_id" in r[task][u] for r in (a, b) for u in users) else "target"
        for u in users:  # the same item: by original ID where both runs name it (any ID scheme)
            if a[task][u].get(key) != b[task][u].get(key):
                raise ValueError(f"{task}: user {u} has target {a[task][u].get(key)!r} in A but "
                                 f"{b[task][u].get(key)!r} in B (different splits, or item IDs of different schemes "
                                 "without target_original_id)")
        kind, kind_b = kind_of(a[task]), kind_of(b[task])
        if kind != kind_b:
            raise ValueError(f"{task}: {kind} rows in A but {kind_b} rows in B")
        ma = per_user_from_ranks([a[task][u]["target_rank"] for u in users], kind)
        mb = per_user_from_ranks([b[task][u]["target_rank"] for u in users], kind)
        for metric in (m for m in ma if metrics is None or m in metrics):
            row = {"task": task, "kind": kind, "metric": metric, "users": len(users), "a": float(ma[metric].mean()),
                   "b": float(mb[metric].mean()), **paired_bootstrap(ma[metric], mb[metric], samples, seed)}
            if metric.startswith(("hit@", "hr@")):
                row.update(mcnemar(ma[metric], mb[metric]))
            rows.append(row)
    return rows


def exposure(a: dict, b: dict, k: int = 10) -> list[dict]:
    """How widely each run's top-k lists spread over the catalog, per retrieval task on the users
    both evaluated (not paired statistics: one figure a run): distinct items shown, the effective
    number of items (exp of the entropy of the slots' item distribution) and the share of all
    slots held by the 10 most-shown items. Tasks whose rows carry no ranked items are left out."""
    rows = []
    for task in sorted(set(a) & set(b)):
        users = sorted(set(a[task]) & set(b[task]))
        if not users or kind_of(a[task]) != "retrieval" or not all(r[task][u].get("ranked") for r in (a, b) for u in users):
            continue
        figures = []
        for run in (a, b):
            _, counts = np.unique(np.concatenate([run[task][u]["ranked"][:k] for u in users]), return_counts=True)
            share = counts / counts.sum()  # [distinct items]
            figures.append({f"distinct@{k}": float(len(counts)),
                            f"effective items@{k}": float(np.exp(-(share * np.log(share)).sum())),
                            f"top-10 items' share@{k}": float(np.sort(share)[-10:].sum())})
        rows += [{"task": task, "metric": m, "users": len(users), "a": figures[0][m], "b": figures[1][m]} for m in figures[0]]
    return rows


def format_p(p: float, samples: int) -> str:
    """A bootstrap p-value of 0 means below the resolution 1 / samples."""
    return f"<{1 / samples:.0e}" if p == 0 else f"{p:.3g}"


def markdown(rows: list[dict], name_a: str, name_b: str, samples: int = 10_000, spread: list[dict] = ()) -> str:
    lines = [f"A = {name_a}", f"B = {name_b}", "",
             "| task | metric | users | A | B | B - A | 95% CI (paired bootstrap) | p (bootstrap) | McNemar A-only / B-only, p |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mc = f"{r['only_a']} / {r['only_b']}, {r['p_mcnemar']:.3g}" if "p_mcnemar" in r else "-"
        lines.append(f"| {r['task']} | {r['metric']} | {r['users']:,} | {r['a']:.4f} | {r['b']:.4f} | {r['diff']:+.4f} | "
                     f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | {format_p(r['p_bootstrap'], samples)} | {mc} |")
    if spread:
        lines += ["", "Exposure: how widely each run's lists spread over the items (one figure a run, not paired)", "",
                  "| task | metric | users | A | B |", "|---|---|---|---|---|"]
        for r in spread:  # counts whole, effective items to a tenth, shares to 3 digits
            digits = 0 if r["metric"].startswith("distinct") else 1 if r["metric"].startswith("effective") else 3
            lines.append(f"| {r['task']} | {r['metric']} | {r['users']:,} | {r['a']:,.{digits}f} | {r['b']:,.{digits}f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['task']} {r['metric']}" for r in rows]
    diffs = np.array([r["diff"] for r in rows])
    err = np.array([[r["diff"] - r["ci_low"] for r in rows], [r["ci_high"] - r["diff"] for r in rows]])
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    y = np.arange(len(rows))
    ax.errorbar(diffs, y, xerr=err, fmt="o", capsize=3)
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("B - A (paired bootstrap 95% CI)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, png.getvalue())
