"""`python -m bot`: until the Discord bot lands, `pgrst-ops check` (the default subcommand)."""

import sys

from bot.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if not any(a in ("check", "fix") for a in args):
        args.append("check")
    sys.exit(main(args))
