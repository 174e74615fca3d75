"""``python -m rec_gym.cli``: the ``rec-gym`` command."""

import sys

from rec_gym.cli import main

sys.exit(main())
