"""Alembic migrations of the alert store, run in code by ``alerts.store.engine.open_store``.

A package (not a bare folder) so the scripts ship inside the wheel. New revision::

    .venv/bin/python -m alerts.migrations revision -m "what changes"
"""
