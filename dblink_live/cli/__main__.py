"""``python -m dblink_live.cli``: the ``dblink-live`` command."""

import sys

from dblink_live.cli import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
