"""The ``nself`` executable: ``--version`` answered before importing anything else,
every other command handed to ``nself.cli``."""

import sys

from . import __version__


def main(argv: list[str] | None = None) -> object:
    args = sys.argv[1:] if argv is None else list(argv)
    if args in (["--version"], ["-V"]):
        print(f"nself {__version__}")
        return 0
    from .cli import main as run

    return run(args)
