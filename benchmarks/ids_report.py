"""Tables and curves of the item-identifier comparison on Beauty (gin/repro/ids, RESULTS.md).

    python benchmarks/ids_report.py [--runs runs/ids] [--data data] [--plot benchmarks/ids_curves.png]

Reads each scheme's `recjax eval --predictions` file (runs/ids/<scheme>/test/predictions.jsonl),
recomputes popularity on exactly the same users (train-split counts, the user's history excluded;
for ranking, the same candidates ordered by count, ties pessimistic), and prints: the metrics
table, paired comparisons against random IDs and against popularity (bootstrap 95% CI, McNemar),
and the identifiers' figures (codebook usage, collisions). Writes the training curves plot.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recjax.evaluation import paired as compare  # noqa: E402
from recjax.predictions import kind_of, read_predictions  # noqa: E402
from recjax.baselines.popularity import Popularity  # noqa: E402
from recjax.data import load_prepared  # noqa: E402
from recjax.metrics import per_user_from_ranks, ranks_from_candidate_scores  # noqa: E402

SCHEMES = ("random", "collaborative", "collaborative_seed1", "semantic_rqkmeans", "semantic_rqvae")  # those run
DATA_DIRS = {"random": "beauty", "collaborative_seed1": "beauty_collaborative"} | {
    s: f"beauty_{s}" for s in ("collaborative", "semantic_rqkmeans", "semantic_rqvae")}
LABELS = {"random": "random (numeric)", "collaborative": "collaborative (CID)",
          "collaborative_seed1": "collaborative (CID), training seed 1",
          "semantic_rqkmeans": "semantic RQ-KMeans (text)", "semantic_rqvae": "semantic RQ-VAE (text)"}


def hit_curve(rows: dict[int, dict], depth: int = 20) -> list[float]:
    """hit@k for k = 1..depth from prediction rows (target_rank -1: not in the returned items)."""
    ranks = np.array([r["target_rank"] for r in rows.values()])
    return [float(np.mean((ranks >= 0) & (ranks < k))) for k in range(1, depth + 1)]


def finish_plot(fig, axes, path: str) -> None:
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"\nwrote {path}")


def popularity_rows(dataset, rows: dict[str, dict[int, dict]]) -> dict[str, dict[int, dict]]:
    """Popularity's predictions on the users (and candidates) of `rows`, in the same format."""
    counts = Popularity(dataset.num_items).fit(dataset.train_sequences()).counts
    order = np.lexsort((np.arange(dataset.num_items), -counts))  # most popular first, lower index on ties
    position = np.empty(dataset.num_items, np.int64)
    position[order] = np.arange(dataset.num_items)
    histories, targets = dataset.loo_split("test")
    out: dict[str, dict[int, dict]] = {}
    for task, by_user in rows.items():
        out[task] = {}
        for user, row in by_user.items():
            if row["kind"] == "retrieval":
                target = int(targets[user])
                assert dataset.item_ids[target] == row["target"], (task, user)
                seen = position[np.unique(histories[user])]
                rank = int(position[target] - (seen < position[target]).sum())
                rank = rank if rank < 20 else -1  # the T5 returns 20 items: same depth
            else:
                cands = [dataset.item_index(i) for i in row["ranked"]]
                positive = cands.index(dataset.item_index(row["target"]))
                rank = int(ranks_from_candidate_scores(counts[cands][None].astype(float), [positive])[0])
            out[task][user] = {"kind": row["kind"], "target": row["target"], "target_rank": rank,
                               "target_original_id": dataset.item_original_ids[dataset.item_index(row["target"])]}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="runs/ids")
    p.add_argument("--data", default="data")
    p.add_argument("--plot", default="benchmarks/ids_curves.png")
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--recipe", default="runs/ids/collaborative",
                   help="the CPU recipe's run (gin/repro/beauty_t5_recipe.gin = the collaborative run): its "
                        "whole-split retrieval (test_full/) and 5,000-user ranking (test/) against popularity")
    args = p.parse_args()
    preds, metrics, datasets = {}, {}, {}
    for scheme in SCHEMES:
        path = os.path.join(args.runs, scheme, "test", "predictions.jsonl")
        if os.path.isfile(path):
            preds[scheme] = read_predictions(path)
            with open(os.path.join(args.runs, scheme, "test", "metrics.json")) as f:
                metrics[scheme] = json.load(f)
            datasets[scheme] = ds = load_prepared(os.path.join(args.data, DATA_DIRS[scheme]))
            for rows in preds[scheme].values():  # predictions written before target_original_id existed
                for row in rows.values():
                    row.setdefault("target_original_id", ds.item_original_ids[ds.item_index(row["target"])])
    if not preds:
        print(f"no predictions under {args.runs}/*/test/", file=sys.stderr)
        return 1
    first = next(iter(preds))
    pop = popularity_rows(datasets[first], preds[first])

    print("| identifiers | task | users | hit@5 (hr@5) | hit@10 (hr@10) | ndcg@5 | ndcg@10 | hr@1 | items returned / user | eval s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, rows in [("popularity", pop)] + [(LABELS[s], preds[s]) for s in preds]:
        for task in sorted(rows):
            kind = kind_of(rows[task])
            m = {k: v.mean() for k, v in per_user_from_ranks([r["target_rank"] for r in rows[task].values()], kind).items()}
            returned = "-"
            secs = "-"
            if name != "popularity":
                scheme = next(s for s in preds if LABELS[s] == name)
                if kind == "retrieval":
                    returned = f"{np.mean([len(r['ranked']) for r in rows[task].values()]):.1f}"
                secs = f"{metrics[scheme]['tasks'][task]['seconds']:.0f}" if task in metrics[scheme]["tasks"] else "-"
            cells = [m.get("hit@5", m.get("hr@5")), m.get("hit@10", m.get("hr@10")), m["ndcg@5"], m["ndcg@10"],
                     m.get("hr@1", float("nan"))]
            print(f"| {name} | {task.split('_', 1)[1]} | {len(rows[task]):,} | " +
                  " | ".join("-" if np.isnan(c) else f"{c:.4f}" for c in cells) + f" | {returned} | {secs} |")

    print("\nPaired differences (B - A) on the same users; 95% CI by paired bootstrap, McNemar for hits:\n")
    pairs = [("popularity", pop, LABELS[s], preds[s]) for s in preds]
    if "random" in preds:
        pairs += [(LABELS["random"], preds["random"], LABELS[s], preds[s]) for s in preds if s != "random"]
    print("| A | B | task | metric | A | B | B - A | 95% CI | p (bootstrap) | McNemar A-only / B-only, p |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name_a, a, name_b, b in pairs:
        for r in compare.compare(a, b, args.samples):
            if r["metric"] not in ("hit@10", "ndcg@10", "hr@1", "hr@10"):
                continue
            mc = f"{r['only_a']} / {r['only_b']}, {r['p_mcnemar']:.2g}" if "p_mcnemar" in r else "-"
            print(f"| {name_a} | {name_b} | {r['task'].split('_', 1)[1]} | {r['metric']} | {r['a']:.4f} | {r['b']:.4f} | "
                  f"{r['diff']:+.4f} | [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | {compare.format_p(r['p_bootstrap'], args.samples)} | {mc} |")

    print("\nIdentifiers (recjax index):\n")
    print("| identifiers | tokens / ID | codes used per level | collisions before the extra code | vocabulary added |")
    print("|---|---|---|---|---|")
    for scheme, ds in datasets.items():
        info = ds.index_info
        if info is None:
            print(f"| {LABELS[scheme]} | 1-3 SentencePiece pieces | - | - | 0 |")
            continue
        used = ", ".join(f"{lv['used']}/{lv['of']}" for lv in info["stats"]["levels"][:-1])
        c = info["collisions"]
        print(f"| {LABELS[scheme]} | {info['levels'] + 1} | {used}; extra code up to {info['collision_code_size']} | "
              f"{c['colliding_items']:,} items ({c['collision_rate']:.1%}), groups up to {c['max_group']} | "
              f"{len(info['code_pieces'])} |")

    recipe_rows = {}
    for sub in ("test_full", "test"):
        path = os.path.join(args.recipe, sub, "predictions.jsonl")
        if os.path.isfile(path):
            for task, rows in read_predictions(path).items():
                recipe_rows.setdefault(task, rows)  # the whole split where evaluated on it
    if recipe_rows:
        ds = load_prepared(os.path.join(args.data, DATA_DIRS["collaborative"]))
        for rows in recipe_rows.values():
            for row in rows.values():
                row.setdefault("target_original_id", ds.item_original_ids[ds.item_index(row["target"])])
        recipe_pop = popularity_rows(ds, recipe_rows)
        print(f"\nThe CPU recipe ({args.recipe}) against popularity on the same users:\n")
        print("| model | task | users | hit@5 (hr@5) | hit@10 (hr@10) | ndcg@5 | ndcg@10 | hr@1 |")
        print("|---|---|---|---|---|---|---|---|")
        for name, rows in (("popularity", recipe_pop), ("T5 recipe (collaborative IDs, 1,200 steps)", recipe_rows)):
            for task in sorted(rows):
                kind = kind_of(rows[task])
                m = {k: v.mean() for k, v in per_user_from_ranks([r["target_rank"] for r in rows[task].values()], kind).items()}
                cells = [m.get("hit@5", m.get("hr@5")), m.get("hit@10", m.get("hr@10")), m["ndcg@5"], m["ndcg@10"],
                         m.get("hr@1", float("nan"))]
                print(f"| {name} | {task.split('_', 1)[1]} | {len(rows[task]):,} | " +
                      " | ".join("-" if np.isnan(c) else f"{c:.4f}" for c in cells) + " |")
        print("\n| A | B | task | metric | A | B | B - A | 95% CI | p (bootstrap) | McNemar A-only / B-only, p |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in compare.compare(recipe_pop, recipe_rows, args.samples):
            mc = f"{r['only_a']} / {r['only_b']}, {r['p_mcnemar']:.2g}" if "p_mcnemar" in r else "-"
            print(f"| popularity | T5 recipe | {r['task'].split('_', 1)[1]} | {r['metric']} | {r['a']:.4f} | {r['b']:.4f} | "
                  f"{r['diff']:+.4f} | [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | "
                  f"{compare.format_p(r['p_bootstrap'], args.samples)} | {mc} |")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_hit) = plt.subplots(1, 2, figsize=(11, 4))
    curves = [(scheme, os.path.join(args.runs, scheme, "metrics.jsonl"), LABELS[scheme]) for scheme in SCHEMES]
    for scheme, path, label in curves:
        if not os.path.isfile(path):
            continue
        rows = [json.loads(line) for line in open(path) if line.strip()]
        train = [r for r in rows if r.get("split") == "train" and "loss" in r]
        ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label=label, lw=1)
        if scheme in preds:
            task = next(t for t in preds[scheme] if t.endswith("retrieval"))
            ax_hit.plot(range(1, 21), hit_curve(preds[scheme][task]), label=LABELS[scheme])
    task = next(t for t in pop if t.endswith("retrieval"))
    ax_hit.plot(range(1, 21), hit_curve(pop[task]), "k--", label="popularity")
    ax_loss.set(xlabel="step", ylabel="train loss per target token (EOS included)", title="training (beauty_rec)")
    ax_hit.set(xlabel="k", ylabel="test hit@k", title="retrieval over all items (beam 20)")
    finish_plot(fig, (ax_loss, ax_hit), args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
