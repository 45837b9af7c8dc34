"""``python -m visionkit`` is ``visionkit`` (as ``python -m visionkit.cli``)."""

import sys

from visionkit.cli import main

sys.exit(main())
