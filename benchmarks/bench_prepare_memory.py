"""Wall time and peak memory of `recjax prepare --format amazon2023` on a large review file, against
a peer in the same run: the Amazon 2023 benchmark's own way (every review a Python tuple, a dict of
the earliest pairs, k-core over Counters: AmazonReviews2023 benchmark_scripts/kcore_filtering.py's
approach, re-written here) on the same file, up to the 5-core's interactions.

    python benchmarks/generate_amazon_reviews.py --release 2023 --reviews 20000000 --out /work/bench/az23_20m
    python benchmarks/bench_prepare_memory.py --src /work/bench/az23_20m [--only recjax|peer]

Each command runs in its own process; its peak resident memory is the kernel's (wait4's
ru_maxrss), its wall time from start to exit. Prints a table and the ratios peer / recjax.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def peer(path: str, k: int = 5) -> None:
    """The benchmark scripts' approach: all reviews as tuples, then dedup and k-core in Python."""
    inters = []
    with gzip.open(path, "rt") if path.endswith(".gz") else open(path) as f:
        for line in f:
            d = json.loads(line)
            inters.append((d["user_id"], d["parent_asin"], float(d["rating"]), int(d["timestamp"])))
    by_user = collections.defaultdict(list)
    for inter in inters:
        by_user[inter[0]].append(inter)
    ordered = []
    for records in by_user.values():
        records.sort(key=lambda d: d[3])
        seen = set()
        for r in records:
            if r[1] not in seen:
                seen.add(r[1])
                ordered.append(r)
    del by_user, inters
    while True:
        users = collections.Counter(r[0] for r in ordered)
        items = collections.Counter(r[1] for r in ordered)
        kept = [r for r in ordered if users[r[0]] >= k and items[r[1]] >= k]
        if len(kept) == len(ordered):
            break
        ordered = kept
    print(f"peer: {len(ordered):,} interactions, {len(set(r[0] for r in ordered)):,} users")


def measure(command: list[str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS bytes, stdout) of one command in its own process."""
    start = time.time()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.time() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)} failed with exit status {proc.returncode}:\n{out}")
    return wall, usage.ru_maxrss * 1024, out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True, help="a folder with <Category>.jsonl[.gz] and meta_<Category>.jsonl[.gz]")
    p.add_argument("--only", choices=("recjax", "peer"), help="measure one of the two")
    p.add_argument("--run-peer", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.run_peer:
        peer(args.run_peer)
        return 0
    reviews = [f for f in glob.glob(os.path.join(args.src, "*.jsonl*")) if not os.path.basename(f).startswith("meta_")]
    if len(reviews) != 1:
        raise SystemExit(f"{args.src}: expected one <Category>.jsonl[.gz], found {reviews}")
    rows = []
    size = os.path.getsize(reviews[0])
    print(f"reviews file {reviews[0]} ({size / 2**30:.2f} GiB)")
    if args.only != "peer":
        out = tempfile.mkdtemp(prefix="bench_prepare_")
        try:
            dest = os.path.join(out, "prepared")
            wall, rss, printed = measure([sys.executable, "-m", "recjax.cli", "prepare", "--format", "amazon2023",
                                          "--src", args.src, "--out", dest, "--no-tfds"])
            with open(os.path.join(dest, "prepared.json")) as f:
                meta = json.load(f)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        print(printed.strip())
        print(f"kept {meta['num_users']:,} users, {meta['num_items']:,} items, {meta['num_interactions']:,} "
              f"interactions of {meta['notes']['reviews read']:,} reviews")
        rows.append(("recjax prepare --format amazon2023", wall, rss))
    if args.only != "recjax":
        peer_wall, peer_rss, peer_out = measure([sys.executable, __file__, "--src", args.src, "--run-peer", reviews[0]])
        print(peer_out.strip())
        rows.append(("peer: tuples + dicts (benchmark scripts' approach)", peer_wall, peer_rss))
    print(f"{'':55s} {'wall':>9s} {'peak RSS':>10s}")
    for name, w, r in rows:
        print(f"{name:55s} {w:8.0f}s {r / 2**30:9.2f}G")
    if len(rows) == 2:
        print(f"peer / recjax: wall {rows[1][1] / rows[0][1]:.2f}x, peak RSS {rows[1][2] / rows[0][2]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
