"""cephtune command line: ``python search.py COMMAND ...`` (also installed as ``cephtune``)."""

import sys

from search.cli import main

if __name__ == "__main__":
    sys.exit(main())
