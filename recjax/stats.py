"""`python -m recjax.stats`: the `recjax stats` command (recjax/cli/stats.py)."""
import sys

from recjax.cli import main

if __name__ == "__main__":
    sys.exit(main(["stats", *sys.argv[1:]]))
