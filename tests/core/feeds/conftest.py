"""Fixtures shared by the feed tests: the real venue payloads in ../shared/samples."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest


@pytest.fixture(scope="session")
def samples_dir(shared_dir: Path) -> Path:
    """``../shared/samples``; skips the test when it is absent."""
    path = shared_dir / "samples"
    if not path.is_dir():
        pytest.skip("../shared/samples is absent: the test reads the real payloads there")
    return path


@pytest.fixture(scope="session")
def sample(samples_dir: Path) -> Callable[[str], Any]:
    """``sample("okx_candles__docs")``: that sample's JSON, parsed; skips when it is missing."""

    def load(name: str) -> Any:
        path = samples_dir / f"{name}.json"
        if not path.is_file():
            pytest.skip(f"missing samples/{name}.json in ../shared")
        return orjson.loads(path.read_bytes())

    return load
