"""``python -m nself``: the same as the ``nself`` executable."""

import sys

from .launch import main

sys.exit(main())  # type: ignore[arg-type]
