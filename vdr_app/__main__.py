"""`python -m vdr_app`: the command line (see vdr_app/cli.py)."""

import sys

from .cli import main

sys.exit(main())
