"""`python -m edge_runtime ...`: the device-side commands."""
import sys

from edge_runtime.cli import main

sys.exit(main())
