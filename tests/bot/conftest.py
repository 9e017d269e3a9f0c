"""Fixtures shared by the bot tests: the store fixtures of tests/alerts (SQLite and PostgreSQL,
PostgreSQL skipping when no server answers) and ``market``, an in-memory market over a store."""

from __future__ import annotations

import pytest

from alerts.store import Store
from tests.alerts.conftest import backend, pg_server, pg_url, store, store_url
from tests.bot.market import Market, make_services

__all__ = ["backend", "market", "pg_server", "pg_url", "store", "store_url"]


@pytest.fixture
def market(store: Store) -> Market:
    """BTC and ETH fresh at ``NOW_MS``, SOL configured without a snapshot, ETF flows, status."""
    return make_services(store)
