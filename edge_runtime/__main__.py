"""`python -m edge_runtime ...`: the device-side commands."""
import sys

from .cli import main

sys.exit(main())
