"""``python -m artaug.cli``: the ``artaug`` command."""

import sys

from artaug.cli import main

sys.exit(main())
