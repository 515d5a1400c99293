"""`python -m recjax.export`: the `recjax export` command (recjax/cli/export.py)."""
import sys

from recjax.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
