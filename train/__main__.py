"""`python -m train`: train and evaluate an expression CNN (see train/cli.py)."""

import sys

from train.cli import main

sys.exit(main())
