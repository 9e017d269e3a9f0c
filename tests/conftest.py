"""Shared fixtures: the real data beside the repo (skipped when absent) and a bar-CSV writer.

Nothing under ../shared is copied into the project (DESIGN §9): tests read it in place, and a
user's checkout without it skips those tests with a clear reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from core.bars import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, Bars

SKIP_REASON = (
    "../shared is absent (a user's checkout): real-data tests need the shared data beside the repo"
)

MARKET_CSV = Path("data") / "market" / "btcusdt_1h_2025-12-04_2026-03-15.csv"
ETF_JSON = Path("data") / "etf" / "btc_etf_flows_farside.json"


def _shared_root() -> Path:
    return Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the repo; skips the test when it is not there."""
    root = _shared_root()
    if not root.is_dir():
        pytest.skip(SKIP_REASON)
    return root


def _shared_file(root: Path, rel: Path) -> Path:
    path = root / rel
    if not path.is_file():
        pytest.skip(f"{SKIP_REASON} (missing {rel})")
    return path


@pytest.fixture(scope="session")
def market_csv(shared_dir: Path) -> Path:
    """The real hourly BTCUSDT bar CSV (DESIGN §3 format)."""
    return _shared_file(shared_dir, MARKET_CSV)


@pytest.fixture(scope="session")
def etf_json(shared_dir: Path) -> Path:
    """The real Farside ETF flows JSON."""
    return _shared_file(shared_dir, ETF_JSON)


BarsCsvWriter = Callable[..., Path]


def bars_to_csv_text(bars: Bars, columns: Sequence[str] | None = None) -> str:
    """Canonical CSV text of ``bars``; NaN cells are left empty, as DESIGN §3 allows."""
    cols = list(columns) if columns is not None else list(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
    lines = [",".join(cols)]
    for i in range(len(bars)):
        cells = []
        for col in cols:
            value = getattr(bars, col)[i]
            if col == "ts":
                cells.append(str(int(value)))
            elif math.isnan(float(value)):
                cells.append("")
            else:
                cells.append(repr(float(value)))
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


@pytest.fixture
def write_bars_csv(tmp_path: Path) -> BarsCsvWriter:
    """``write(bars, name="bars.csv", columns=None) -> Path``: a canonical CSV in tmp_path."""

    def write(bars: Bars, name: str = "bars.csv", columns: Sequence[str] | None = None) -> Path:
        path = tmp_path / name
        path.write_text(bars_to_csv_text(bars, columns), encoding="utf-8")
        return path

    return write
