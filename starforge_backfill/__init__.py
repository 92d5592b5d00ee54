"""starforge-backfill: backfill raw hero_snapshots into normalized PostgreSQL tables, safely."""

from __future__ import annotations

__version__ = "0.1.0"
