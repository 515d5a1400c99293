"""`python -m recjax.index`: the `recjax index` command (recjax/cli/index.py)."""
import sys

from recjax.cli import main

if __name__ == "__main__":
    sys.exit(main(["index", *sys.argv[1:]]))
