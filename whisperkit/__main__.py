"""``python -m whisperkit`` is the ``whisperkit`` command."""

import sys

from whisperkit.cli import main

sys.exit(main())
