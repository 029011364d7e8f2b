"""``python -m tripwire.cli``: the ``tripwire`` command."""

import sys

from tripwire.cli import main

sys.exit(main())
