"""``python -m omnitrain``: the same CLI, handy under torchrun."""

import sys

from omnitrain.cli import main

sys.exit(main())
