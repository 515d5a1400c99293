"""Benchmark `recjax prepare` on the real Beauty data (P5 files in ../shared/data/beauty).

Runs the binary in a fresh process (as a user would: imports, reading, policies, indexing, the
numpy/JSON files and the TFDS copy) and reports its wall time and peak RSS, then the time of
`load_prepared`. Targets (issue 3): under 60 s and under 2 GiB.

    python benchmarks/bench_prepare.py [--src ../shared/data/beauty] [--format p5] [--repeats 1] [--compare-builder]

--compare-builder also times the TFDS copy written by TFDS's own GeneratorBasedBuilder machinery
(`build_with_tfds_builder`, in a fresh process) against recjax's direct writer (`write_tfds`).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT_S, LIMIT_BYTES = 60.0, 2 * 1024**3


def run_prepare(fmt: str, src: str, out: str, extra: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of one `recjax prepare` child process."""
    code = "import sys, resource; from recjax.prepare import main; rc = main(sys.argv[1:]); " \
           "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, "--format", fmt, "--src", src, "--out", out, *extra],
                          capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"recjax prepare failed:\n{proc.stderr[-2000:]}")
    rss_kb = int(next(line.split()[1] for line in proc.stderr.splitlines() if line.startswith("MAXRSS_KB")))
    return wall, rss_kb * 1024


def time_tfds_writers(fmt: str, src: str) -> None:
    """Seconds of the TFDS copy alone: TFDS's builder vs recjax's direct writer (same data, fresh processes)."""
    code = ("import sys, time, tempfile; from recjax.data.preparation import build; from recjax.data import tfds_builder as tb; "
            "import tensorflow, tensorflow_datasets; ds, _ = build(sys.argv[1], sys.argv[2], 'beauty'); "
            "t = time.perf_counter(); getattr(tb, sys.argv[3])(ds, tempfile.mkdtemp()); print('SECONDS', time.perf_counter() - t)")
    seconds = {}
    for writer in ("build_with_tfds_builder", "write_tfds"):
        proc = subprocess.run([sys.executable, "-c", code, fmt, src, writer], capture_output=True, text=True, cwd=REPO)
        if proc.returncode:
            sys.exit(f"{writer} failed:\n{proc.stderr[-2000:]}")
        seconds[writer] = float(next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("SECONDS")))
    print(f"  TFDS copy only (TF imported beforehand): TFDS builder {seconds['build_with_tfds_builder']:.1f} s, "
          f"recjax write_tfds {seconds['write_tfds']:.1f} s, ratio {seconds['build_with_tfds_builder'] / seconds['write_tfds']:.1f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", default=os.path.join(REPO, "..", "shared", "data", "beauty"))
    parser.add_argument("--format", default="p5")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--compare-builder", action="store_true", help="also time TFDS's builder path against write_tfds")
    args = parser.parse_args()
    if not os.path.isdir(args.src):
        sys.exit(f"{args.src}: not found (the real data lives in ../shared/data beside the checkout)")

    sys.path.insert(0, REPO)
    from recjax.data import load_prepared

    print(f"recjax prepare --format {args.format} --src {os.path.normpath(args.src)}  (load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs)")
    ok = True
    for label, extra in (("with TFDS copy (default)", []), ("numpy/JSON only (--no-tfds)", ["--no-tfds"])):
        for r in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "beauty")
                wall, rss = run_prepare(args.format, args.src, out, extra)
                start = time.perf_counter()
                ds = load_prepared(out)
                load_s = time.perf_counter() - start
                size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
            passed = wall < LIMIT_S and rss < LIMIT_BYTES
            ok &= passed or bool(extra)
            print(f"  {label:30s} prepare {wall:6.1f} s  peak RSS {rss / 2**20:7.0f} MiB  load_prepared {load_s:5.2f} s  "
                  f"output {size / 2**20:5.1f} MiB  ({ds.num_users:,} users, {ds.num_items:,} items, {ds.num_interactions:,} interactions)"
                  + ("" if extra else f"  [target < {LIMIT_S:.0f} s, < 2 GiB: {'PASS' if passed else 'FAIL'}]"))
    if args.compare_builder:
        time_tfds_writers(args.format, args.src)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
