"""`python -m recjax.cli <command> ...`: the `recjax` command."""
import sys

from recjax.cli import main

sys.exit(main())
