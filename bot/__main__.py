"""`python -m bot`: the Discord bot, or the console monitor when no token is set."""

import sys

from bot.app import main

if __name__ == "__main__":
    sys.exit(main())
