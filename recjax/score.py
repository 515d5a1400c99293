"""`python -m recjax.score`: the `recjax score` command (recjax/cli/score.py)."""
import sys

from recjax.cli import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
