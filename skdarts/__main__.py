"""``python -m skdarts`` runs the ``skdarts`` command."""

import sys

from .cli import main

sys.exit(main())
