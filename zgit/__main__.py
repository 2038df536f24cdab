"""``python -m zgit``: the zgit command line."""

import sys

from zgit.cli import main

if __name__ == "__main__":
    sys.exit(main())
