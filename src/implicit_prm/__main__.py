"""`python -m implicit_prm` runs the CLI."""
import sys

from .cli import main

sys.exit(main())
