"""``python -m eval.dub``: see :mod:`eval.dub.cli`."""

import sys

from eval.dub.cli import main

sys.exit(main())
