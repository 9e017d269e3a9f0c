"""A follower instance answers /liqmap with the leader's map: the leader stores each symbol's map
view and render key with its snapshot, and a follower seeds its cache from the store (SQLite
and PostgreSQL)."""

from __future__ import annotations

import dataclasses

import numpy as np

from alerts.snapshots import SnapshotCache
from alerts.store import Store, get_snapshot_views, put_snapshots
from alerts.store.map_codec import map_from_dict, map_to_dict
from bot.commands import CommandRouter
from tests.bot.market import Market
from tests.bot.test_commands_support import run


async def store_like_the_leader(store: Store, market: Market) -> None:
    builds = [b for b in map(market.cache.build, market.cache.symbols()) if b is not None]
    views = {b.snapshot.symbol: (b.map, b.render_key) for b in builds if b.map and b.render_key}
    assert views, "the market has maps to store"
    await put_snapshots(store, [b.snapshot for b in builds], views)


async def test_a_follower_draws_the_leaders_map(store: Store, market: Market) -> None:
    await store_like_the_leader(store, market)
    follower_cache = SnapshotCache()
    for got in (await get_snapshot_views(store)).values():
        follower_cache.seed(got.snapshot, got.map, got.render_key)
    follower = CommandRouter(
        dataclasses.replace(market.services, snapshots=follower_cache, series=None)
    )
    leader = CommandRouter(market.services)

    for line in ("/liqmap BTC", "/liqmap ETH 5%"):
        mine, theirs = await run(follower, line), await run(leader, line)
        assert mine.png is not None and mine.png.startswith(b"\x89PNG")
        assert mine.text == theirs.text  # same clusters, peaks, venues and freshness
    leader_build, follower_build = market.cache.build("BTC"), follower_cache.build("BTC")
    assert leader_build is not None and follower_build is not None
    assert follower_build.render_key == leader_build.render_key


async def test_a_snapshot_stored_without_a_map_still_answers(store: Store, market: Market) -> None:
    build = market.cache.build("BTC")
    assert build is not None
    await put_snapshots(store, [build.snapshot])  # an older leader wrote no map
    (got,) = (await get_snapshot_views(store)).values()
    assert got.map is None and got.render_key is None
    cache = SnapshotCache()
    cache.seed(got.snapshot, got.map, got.render_key)
    follower = CommandRouter(dataclasses.replace(market.services, snapshots=cache, series=None))
    reply = await run(follower, "/liqmap BTC")
    assert reply.png is None and "No map to draw yet" in reply.text


def test_the_map_codec_keeps_the_map_to_the_dollar(market: Market) -> None:
    build = market.cache.build("BTC")
    assert build is not None and build.map is not None and build.render_key is not None
    m, key = map_from_dict(map_to_dict(build.map, build.render_key))
    assert key == build.render_key
    assert (m.symbol, m.venues, m.ts_ms, m.leverages) == (
        build.map.symbol,
        build.map.venues,
        build.map.ts_ms,
        build.map.leverages,
    )
    assert (m.price, m.bin_size, m.origin) == (
        build.map.price,
        build.map.bin_size,
        build.map.origin,
    )
    assert m.long_usd.shape == build.map.long_usd.shape
    assert np.abs(m.long_usd - build.map.long_usd).max() <= 0.5
    assert np.abs(m.short_usd - build.map.short_usd).max() <= 0.5
