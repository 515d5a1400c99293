"""`python -m recjax.convert`: the `recjax convert` command (recjax/cli/convert.py)."""
import sys

from recjax.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
