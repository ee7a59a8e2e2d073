"""`python -m bot`: until the Discord bot lands, the same as `pgrst-ops check`."""

import sys

from bot.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] if len(sys.argv) > 1 else ["check"]))
