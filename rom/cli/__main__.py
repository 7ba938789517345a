"""``python -m rom.cli``: the ``rom`` command."""

import sys

from rom.cli import main

if __name__ == "__main__":
    sys.exit(main())
