"""`python -m recjax.eval`: the `recjax eval` command (recjax/cli/eval.py)."""
import sys

from recjax.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
