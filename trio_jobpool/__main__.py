"""``python -m trio_jobpool``: the ``trio-jobpool`` command line."""

import sys

from .cli import main

sys.exit(main())
