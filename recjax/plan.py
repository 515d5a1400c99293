"""`python -m recjax.plan`: the `recjax plan` command (recjax/cli/plan.py)."""
import sys

from recjax.cli import main

if __name__ == "__main__":
    sys.exit(main(["plan", *sys.argv[1:]]))
