"""`python -m recjax.inspect`: the `recjax inspect` command (recjax/cli/inspect.py)."""
import sys

from recjax.cli import main

if __name__ == "__main__":
    sys.exit(main(["inspect", *sys.argv[1:]]))
