"""``python -m hierspeech2.cli``: the ``hierspeech2`` command."""

import sys

from . import main

sys.exit(main())
