"""`recjax stats DIR`: users, items, interactions, sequence-length percentiles, density of a prepared dataset."""
from __future__ import annotations

import argparse
import json

from recjax import exit_codes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recjax stats", description=__doc__)
    parser.add_argument("directory", help="a prepared dataset (written by `recjax prepare`)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    from recjax.data.prepared import NotPreparedError, load_prepared
    from recjax.data.stats import dataset_stats, format_stats

    try:
        dataset = load_prepared(args.directory)
    except NotPreparedError as e:
        return exit_codes.report("stats", e)
    stats = dataset_stats(dataset)
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0

