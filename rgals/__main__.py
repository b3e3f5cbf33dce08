"""`python -m rgals` runs the `rgals` command."""

import sys

from .cli import main

sys.exit(main())
