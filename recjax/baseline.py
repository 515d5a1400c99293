"""`python -m recjax.baseline`: the `recjax baseline` command (recjax/cli/baseline.py)."""
import sys

from recjax.cli import main

if __name__ == "__main__":
    sys.exit(main(["baseline", *sys.argv[1:]]))
