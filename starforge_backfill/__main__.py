"""Allow `python -m starforge_backfill`."""

from __future__ import annotations

from starforge_backfill.cli import main

if __name__ == "__main__":
    main()
