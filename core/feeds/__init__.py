"""Market-data feeds: the only code that knows a venue's JSON (DESIGN §2).

Everything above this package sees core types: bars, open interest, liquidation events, ETF
flows, in USD notional and epoch-ms UTC.
"""
