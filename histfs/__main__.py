"""`python -m histfs`."""

import sys

from histfs.cli import main

sys.exit(main())
