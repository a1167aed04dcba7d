"""``python -m stllr COMMAND ...`` (also the ``stllr`` console script): see :mod:`stllr.cli`."""

import sys

from stllr.cli import main

if __name__ == "__main__":
    sys.exit(main())
