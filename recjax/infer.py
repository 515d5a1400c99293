"""`python -m recjax.infer`: the `recjax infer` command (recjax/cli/infer.py)."""
import sys

from recjax.cli import main

if __name__ == "__main__":
    sys.exit(main(["infer", *sys.argv[1:]]))
