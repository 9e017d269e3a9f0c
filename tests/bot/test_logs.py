"""Secrets never reach a log line, whichever logger prints them (bot.logs)."""

from __future__ import annotations

import io
import logging

import orjson
import pytest

from bot.logs import REDACTED, redact, setup_logging

TG_TOKEN = "7012345678:AAHk2x9-JQ_exampleexampleexample1234"
DISCORD_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.abcdefghijklmnopqrstuvwxyz0123"


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    monkeypatch.setenv("LIQBOT_TELEGRAM_TOKEN", TG_TOKEN)
    monkeypatch.setenv("LIQBOT_SOSOVALUE_KEY", "soso-secret-key-123")
    out = io.StringIO()
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    setup_logging("debug", stream=out)
    yield out
    root.handlers[:] = before[0]
    root.setLevel(before[1])


def test_secret_values_and_token_shapes_are_redacted() -> None:
    text = f"GET https://api.telegram.org/bot{TG_TOKEN}/getMe and {DISCORD_TOKEN}"
    assert redact(text, secrets=()) == (
        f"GET https://api.telegram.org/bot{REDACTED}/getMe and {REDACTED}"
    )
    assert redact("key=abcdefgh12345", secrets=["abcdefgh12345"]) == f"key={REDACTED}"
    assert redact("nothing secret here: 96,202 at 12:00") == "nothing secret here: 96,202 at 12:00"


def test_every_logger_and_traceback_is_redacted(captured: io.StringIO) -> None:
    logging.getLogger("telegram.ext").warning("calling %s", f"/bot{TG_TOKEN}/sendMessage")
    logging.getLogger("liqbot").info("etf source key soso-secret-key-123 rejected")
    try:
        raise RuntimeError(f"boom with {TG_TOKEN}")
    except RuntimeError:
        logging.getLogger("liqbot").exception("failed")
    text = captured.getvalue()
    assert TG_TOKEN not in text and "soso-secret-key-123" not in text
    assert text.count(REDACTED) == 3
    assert "RuntimeError: boom with [redacted]" in text


def test_json_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    try:
        setup_logging("info", json_lines=True, stream=out)
        logging.getLogger("liqbot").info("tick %d done", 7)
    finally:
        root.handlers[:] = before[0]
        root.setLevel(before[1])
    (line,) = out.getvalue().splitlines()
    data = orjson.loads(line)
    assert data["msg"] == "tick 7 done" and data["level"] == "info" and data["logger"] == "liqbot"
    assert data["ts"].endswith("Z")


def test_request_loggers_stay_at_warnings(captured: io.StringIO) -> None:
    logging.getLogger("httpx").info(f"HTTP Request: POST https://x/bot{TG_TOKEN}/getUpdates")
    assert "getUpdates" not in captured.getvalue()
