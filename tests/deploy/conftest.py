"""The deploy/ tests reuse the CLI tests' helpers (snapshots made in SQL, the CLI in-process and as a subprocess)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
