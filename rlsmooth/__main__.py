"""``python -m rlsmooth ...``: the command line (what sweeps run for each cell)."""
import sys

from rlsmooth.cli import main

sys.exit(main())
