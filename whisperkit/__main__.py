"""``python -m whisperkit`` is the ``whisperkit`` command."""

import sys

from whisperkit.cli.commands import main

sys.exit(main())
