"""``python -m skdarts.cli`` runs the ``skdarts`` command."""

import sys

from .parser import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
