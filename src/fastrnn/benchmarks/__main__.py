"""``python -m fastrnn.benchmarks``: the same as ``python -m fastrnn bench``."""

import sys

from fastrnn.benchmarks.cli import main

if __name__ == "__main__":
    sys.exit(main())
