"""`python -m recjax.prepare`: the `recjax prepare` command (recjax/cli/prepare.py)."""
import sys

from recjax.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
