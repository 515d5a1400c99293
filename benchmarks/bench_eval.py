"""Where a whole-split evaluation's time goes, and how fast each evaluation setting is.

    python benchmarks/bench_eval.py --gin_file=gin/repro/ids/semantic_rqkmeans.gin \
        --checkpoint runs/ids/semantic_rqkmeans --users 2000 [--batch_sizes 64,256] [--ranking_batch_sizes 16,64]

For a seeded sample of test users (the same users for every setting, `EvalOptions.max_examples`):
the time to build and tokenize the split's examples, then retrieval (beam 20 over all items) and
ranking at each batch size, in users/s, with the first batch's compilation timed apart. Prints a
markdown table and the projected time of the whole split.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gin_file", action="append", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--batch_sizes", default="64,256")
    p.add_argument("--ranking_batch_sizes", default="16,64")
    p.add_argument("--split", default="test")
    args = p.parse_args()

    import tasks
    from recjax import gin_utils
    from recjax.checkpoints import Checkpoint
    from recjax.evaluation import EvalOptions, _evaluate_ranking, _evaluate_retrieval, catalog_of, load_examples
    from recjax.partitioning import Partitioner
    from recjax.restore import restore_model

    gin_utils.parse_gin(args.gin_file, [], [])
    registered = tasks.register_dataset()
    place = Partitioner.create()
    with Checkpoint(args.checkpoint) as checkpoint:
        model, params, step = restore_model(checkpoint, place)
    catalog = catalog_of(registered.name, model.config.vocab_size)
    total_users = registered.builder.num_users
    rows = []
    for kind, sizes, fn in (("retrieval", args.batch_sizes, _evaluate_retrieval),
                            ("ranking", args.ranking_batch_sizes, _evaluate_ranking)):
        import seqio
        task = seqio.get_mixture_or_task(registered.tasks[kind])
        start = time.perf_counter()
        examples = load_examples(task, args.split, args.users)
        load_s = time.perf_counter() - start
        rows.append((kind, "examples of the whole split, built + tokenized", "-", f"{load_s:.1f}", "-", "-"))
        for size in [int(s) for s in sizes.split(",")]:
            field = "batch_size" if kind == "retrieval" else "ranking_batch_size"
            options = EvalOptions(**{field: size}, progress=False)
            warm = examples[:size]
            start = time.perf_counter()
            fn(model, params, task, warm, catalog, options, place)  # compiles the shapes of one batch
            first_s = time.perf_counter() - start
            start = time.perf_counter()
            metrics, _, _ = fn(model, params, task, examples, catalog, options, place)
            run_s = time.perf_counter() - start
            rate = len(examples) / run_s
            rows.append((kind, f"batch {size}", f"{len(examples):,}", f"{run_s:.1f}", f"{rate:.1f}",
                         f"{total_users / rate / 60:.1f}"))
            print(f"{kind} batch {size}: {rate:.1f} users/s (first batch with compilation {first_s:.1f} s); "
                  f"ndcg@10 {metrics.get('ndcg@10', float('nan')):.4f}", flush=True)
    print(f"\ncheckpoint {args.checkpoint} (step {step}), {jax_devices()}, {args.users:,} sampled {args.split} users "
          f"of {total_users:,}\n")
    print("| task | setting | users | seconds | users/s | whole split, min (decoding) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


def jax_devices() -> str:
    import jax
    return f"{jax.device_count()} x {jax.devices()[0].device_kind}"


if __name__ == "__main__":
    sys.exit(main())
