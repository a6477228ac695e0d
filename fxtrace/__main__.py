"""``python -m fxtrace``: the command line (see :mod:`fxtrace.cli`)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
