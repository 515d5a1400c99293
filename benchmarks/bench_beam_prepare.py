"""`recjax prepare --runner beam` (DirectRunner) against the default streaming path on a generated
Amazon-2023-format category of Beauty's size: both outputs must be the same dataset (the same
users, items, sequences, ratings, times and dropped counts), and the wall time of each.

    python benchmarks/bench_beam_prepare.py [--reviews 700000] [--kcore 5] [--workers 2]

The generated category (benchmarks/generate_amazon_reviews.py, seed 0) keeps about as many
interactions after the 5-core as Beauty's 198,502 with the default --reviews.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate_amazon_reviews  # noqa: E402


def prepare(src: str, out: str, kcore: int, extra: list[str]) -> float:
    start = time.time()
    subprocess.run([sys.executable, "-m", "recjax.cli", "prepare", "--format", "amazon2023", "--src", src, "--out", out,
                    "--no-tfds", "--kcore", str(kcore), *extra], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.time() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reviews", type=int, default=700_000)
    p.add_argument("--kcore", type=int, default=5)
    p.add_argument("--workers", type=int, default=2, help="DirectRunner workers (multi_processing)")
    args = p.parse_args(argv)
    from recjax.data import load_prepared

    root = tempfile.mkdtemp(prefix="bench_beam_")
    try:
        raw = os.path.join(root, "raw")
        generate_amazon_reviews.generate(raw, "2023", "Beauty_Sized", args.reviews, seed=0)
        local_s = prepare(raw, os.path.join(root, "local"), args.kcore, [])
        options = f"--runner=DirectRunner --direct_num_workers={args.workers} --direct_running_mode=multi_processing"
        beam_s = prepare(raw, os.path.join(root, "beam"), args.kcore, ["--runner", "beam",
                                                                        f"--beam_pipeline_options={options}"])
        a, b = (load_prepared(os.path.join(root, d)) for d in ("local", "beam"))
        meta = [json.load(open(os.path.join(root, d, "prepared.json"))) for d in ("local", "beam")]
        same = (a.user_original_ids == b.user_original_ids and a.item_original_ids == b.item_original_ids
                and a.item_ids == b.item_ids and a.item_titles == b.item_titles
                and all(np.array_equal(x, y) for n in ("sequences", "ratings", "timestamps")
                        for x, y in zip(getattr(a, n), getattr(b, n)))
                and meta[0]["dropped"] == meta[1]["dropped"] and meta[0]["notes"] == meta[1]["notes"])
        print(f"{args.reviews:,} generated reviews -> {a.num_users:,} users, {a.num_items:,} items, "
              f"{a.num_interactions:,} interactions ({args.kcore}-core, leave-last-out)")
        print(f"default (streamed)           {local_s:7.1f} s")
        print(f"beam DirectRunner x{args.workers}        {beam_s:7.1f} s   ({beam_s / local_s:.1f}x the default's)")
        print(f"same dataset: {same}")
        return 0 if same else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
