"""``python -m ase_cartnet.cli``: the ``ase-cartnet`` command."""

import sys

from ase_cartnet.cli import main

sys.exit(main())
