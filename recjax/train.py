"""`python -m recjax.train`: the `recjax train` command (recjax/cli/train.py)."""
import sys

from recjax.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
