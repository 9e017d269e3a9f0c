"""Errors raised by the feeds::

LiqbotError
└── FeedError                 a venue could not give usable data (never becomes an alert)
    ├── FeedUnavailable       network error, timeout or 5xx after retries; try later
    ├── RateLimited           429: the venue asked us to slow down (retry_after_s)
    ├── Banned                418 / 403 ban or geo-block: the circuit is open until until_ms
    ├── CircuitOpen           a call was refused locally because the venue's circuit is open
    ├── VenueError            the venue answered with an error (HTTP 4xx or an error on 200)
    │   └── UnknownSymbol     the venue does not know the instrument
    └── JunkResponse          the body is not what the venue documents (bad JSON, bad shape)
"""

from __future__ import annotations

from core.errors import LiqbotError


class FeedError(LiqbotError):
    """A venue could not give usable data."""

    def __init__(self, venue: str, message: str) -> None:
        super().__init__(f"{venue}: {message}")
        self.venue = venue


class FeedUnavailable(FeedError):
    """Network error, timeout or 5xx that survived the retries."""


class RateLimited(FeedError):
    def __init__(self, venue: str, message: str, retry_after_s: float) -> None:
        super().__init__(venue, message)
        self.retry_after_s = retry_after_s


class Banned(FeedError):
    """The venue banned or geo-blocked us; no request may go out before ``until_ms``."""

    def __init__(self, venue: str, message: str, until_ms: int) -> None:
        super().__init__(venue, message)
        self.until_ms = until_ms


class CircuitOpen(FeedError):
    def __init__(self, venue: str, message: str, until_ms: int) -> None:
        super().__init__(venue, message)
        self.until_ms = until_ms


class VenueError(FeedError):
    """An error the venue reported: HTTP 4xx, or an error code inside an HTTP 200 body."""

    def __init__(self, venue: str, message: str, code: str | int | None = None) -> None:
        super().__init__(venue, message)
        self.code = code


class UnknownSymbol(VenueError):
    pass


class JunkResponse(FeedError):
    """The body is not what the venue documents; it is rejected, never half-used."""
