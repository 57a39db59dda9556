"""`python -m weir ...` is the `weir` command."""

import sys

from weir.service.cli import main

sys.exit(main())
