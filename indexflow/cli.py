"""`python -m indexflow.cli` keeps working: the command line lives in `indexflow.app.cli`."""

import sys

from indexflow.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
