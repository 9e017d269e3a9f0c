"""One symbol everywhere: 'BTC', 'btc', 'BTCUSDT' and 'BTC-USDT-SWAP' all mean one perpetual."""

from __future__ import annotations

import functools
import re

from core.errors import InputError
from core.feeds.types import Venue

# Bases the bot knows out of the box; any other well-formed base is accepted by parse_symbol
# with known_only=False (the venue then says whether it lists it).
KNOWN_BASES: tuple[str, ...] = ("BTC", "ETH", "SOL", "XRP", "DOGE", "BNB")

_FORMS = (
    re.compile(r"^([A-Z0-9]{2,15})-USDT-SWAP$"),  # OKX
    re.compile(r"^([A-Z0-9]{2,15})-USDT$"),
    re.compile(r"^([A-Z0-9]{2,15})/USDT(?::USDT)?$"),  # ccxt style
    re.compile(r"^([A-Z0-9]{2,15}?)USDT$"),  # Binance, Bybit linear
    re.compile(r"^([A-Z0-9]{2,15})$"),
)


def parse_symbol(text: str, *, known_only: bool = True) -> str:
    """Canonical base symbol ('BTC') of any accepted spelling.

    Raises InputError naming the known symbols when ``text`` is not one.
    """
    raw = text.strip().upper().lstrip("$")
    for form in _FORMS:
        m = form.match(raw)
        if m:
            base = m.group(1)
            if known_only and base not in KNOWN_BASES:
                break
            return base
    known = ", ".join(KNOWN_BASES)
    shown = text.strip()[:20] or "(empty)"
    raise InputError(f"Unknown symbol {shown}. Try {known}.")


def venue_symbol(base: str, venue: Venue) -> str:
    """The instrument id of the USDT-margined perpetual of ``base`` on ``venue``."""
    if venue == "okx":
        return f"{base}-USDT-SWAP"
    return f"{base}USDT"


@functools.lru_cache(maxsize=4096)
def base_of(instrument: str) -> str:
    """Base symbol of a venue instrument id, without the known-symbol check.

    Cached: the liquidation streams call it once per event.
    """
    return parse_symbol(instrument, known_only=False)
