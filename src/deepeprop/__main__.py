"""``python -m deepeprop``: the ``deepeprop`` console script."""
import sys

from .cli import main

sys.exit(main())
