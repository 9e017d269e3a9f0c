"""What an HTTP answer says besides its data: the JSON body, waits asked for, bans, error texts.

Stateless helpers of :class:`~core.feeds.http.HttpClient`, and the masking of secrets (API keys)
in error messages. Nothing here sends a request.
"""

from __future__ import annotations

import email.utils
import math
import re
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

JUNK = object()  # a body that is empty or not JSON
_BANNED_UNTIL = re.compile(r"banned until (\d{10,13})")


def parse_body(content: bytes) -> Any:
    """The parsed JSON body, or :data:`JUNK`."""
    if not content:
        return JUNK
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return JUNK


def retry_after(response: httpx.Response, body: Any, now: float) -> float | None:
    """Seconds the venue asked us to wait: Retry-After (seconds or HTTP date), else the body's
    ``retry_after`` (top level or under ``details``, as SoSoValue sends it)."""
    raw = response.headers.get("Retry-After")
    if raw is not None:
        try:
            return _seconds(float(raw))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        return max(when.timestamp() - now, 0.0)
    if isinstance(body, dict):
        details = body.get("details")
        value = body.get("retry_after")
        if value is None and isinstance(details, dict):
            value = details.get("retry_after")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _seconds(float(value))
    return None


def banned_until(response: httpx.Response) -> float | None:
    """Epoch seconds of a ban's end stamped in the body ("banned until 1774784983751")."""
    match = _BANNED_UNTIL.search(response.content[:2000].decode("utf-8", "replace"))
    if match is None:
        return None
    stamp = int(match.group(1))
    return stamp / 1000 if stamp > 10**11 else float(stamp)


def code_and_message(body: Any) -> tuple[str | int | None, str | None]:
    """(code, message) from the error bodies the venues send."""
    if not isinstance(body, dict):
        return None, None
    code = body.get("code", body.get("retCode"))
    msg = body.get("msg", body.get("retMsg", body.get("message")))
    return code, str(msg) if msg is not None else None


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every one of ``secrets`` replaced by ``***`` (give the longest first)."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def redact_error(exc: BaseException, secrets: Sequence[str]) -> bool:
    """Mask ``secrets`` in the arguments (the message) of ``exc``, in place; True if any was."""
    if not any(s in str(a) for a in exc.args for s in secrets):
        return False
    exc.args = tuple(redact(str(a), secrets) for a in exc.args)
    return True


def _seconds(value: float) -> float | None:
    return max(value, 0.0) if math.isfinite(value) else None
