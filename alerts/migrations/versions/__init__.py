"""Alembic revisions, applied in order by ``alerts.store.engine.upgrade``."""
