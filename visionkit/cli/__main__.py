"""``python -m visionkit.cli`` is ``visionkit``."""

import sys

from visionkit.cli import main

sys.exit(main())
