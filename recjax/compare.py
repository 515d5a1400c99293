"""`python -m recjax.compare`: the `recjax compare` command (recjax/cli/compare.py)."""
import sys

from recjax.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
