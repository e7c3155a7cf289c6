#!/usr/bin/env python
"""``python run.py ...`` is ``rlsmooth ...`` from a checkout (the CLI lives in rlsmooth/cli.py)."""
import sys

from rlsmooth.cli import main

if __name__ == "__main__":
    sys.exit(main())
