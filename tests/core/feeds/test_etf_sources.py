"""ETF flow sources: SoSoValue and CoinGlass parsers against the real samples, their clients over
httpx.MockTransport (key header, key never leaked), and EtfFeed's source choice and day cache."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from core.errors import DataError, InputError
from core.etf import EtfFlows
from core.etf_io import load_flows
from core.feeds.coinglass import (
    CoinGlassClient,
    parse_etf_flow_history,
    parse_etf_net_assets_history,
)
from core.feeds.errors import FeedUnavailable, JunkResponse, RateLimited, VenueError
from core.feeds.etf_feed import DAY_MS, EtfFeed, FlowSource, make_source
from core.feeds.sosovalue import (
    SoSoValueClient,
    parse_summary_history,
    parse_ticker_history,
    unwrap,
    with_funds,
)
from tests.fakes.http_server import FakeHttpServer, Reply
from tests.fakes.timing import ManualClock

KEY = "sk-test-5ecret-KEY-do-not-leak"
T0 = datetime(2026, 1, 14, 9, 0, tzinfo=UTC).timestamp()  # a Wednesday morning, UTC
DAY_S = 86_400.0


class FakeClock(ManualClock):
    def __init__(self, now: float = T0) -> None:
        super().__init__(now)


class Recorder:
    """A MockTransport handler answering from a queue (the last answer repeats)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, content=orjson.dumps(answer))


# --- SoSoValue: parsers on the real samples ----------------------------------------------------


def test_sosovalue_summary_docs_bare_array(sample: Callable[[str], Any]) -> None:
    flows = parse_summary_history(sample("sosovalue_v1_etfs_summary_history__docs"))
    assert [str(d) for d in flows.dates] == ["2024-04-11", "2024-04-12"]  # newest first on the wire
    assert flows.funds == ()
    assert flows.flows.shape == (2, 0)
    assert flows.total.tolist() == pytest.approx([91.269283, -55.066297])


def test_sosovalue_summary_enveloped(sample: Callable[[str], Any]) -> None:
    flows = parse_summary_history(sample("sosovalue_v1_etfs_summary_history__thirdparty"))
    assert [str(d) for d in flows.dates] == ["2026-05-18"]
    assert flows.total[0] == pytest.approx(-648.64056663)


def test_sosovalue_legacy_v2_inflow_chart(sample: Callable[[str], Any]) -> None:
    flows = parse_summary_history(sample("sosovalue_v2_historicalInflowChart__docs_first_row"))
    assert [str(d) for d in flows.dates] == ["2024-04-12"]
    assert flows.total[0] == pytest.approx(-55.066297)


def test_sosovalue_ticker_history(sample: Callable[[str], Any]) -> None:
    rows = parse_ticker_history(sample("sosovalue_v1_etf_ticker_history__docs"), "IBIT")
    assert rows == {date(2024, 4, 12): pytest.approx(3.0)}


def test_sosovalue_summary_with_funds(sample: Callable[[str], Any]) -> None:
    summary = parse_summary_history(sample("sosovalue_v1_etfs_summary_history__docs"))
    ibit = parse_ticker_history(sample("sosovalue_v1_etf_ticker_history__docs"), "IBIT")
    flows = with_funds(summary, {"IBIT": ibit})
    assert flows.funds == ("IBIT",)
    assert flows.flows[:, 0].tolist() == pytest.approx([0.0, 3.0])
    np.testing.assert_array_equal(flows.total, summary.total)  # the all-fund total stays
    assert "do not add up to the all-fund total on 2 of 2 days" in flows.notes[-1]


def test_sosovalue_error_samples(sample: Callable[[str], Any]) -> None:
    with pytest.raises(VenueError, match="code 40001: Invalid parameter") as info:
        unwrap(sample("sosovalue_v1_error__docs"), "summary")
    assert info.value.code == 40001
    with pytest.raises(RateLimited, match="Rate limit exceeded") as limited:
        unwrap(sample("sosovalue_v1_rate_limit_429__docs"), "summary")
    assert limited.value.retry_after_s == 45


@pytest.mark.parametrize(
    ("payload", "error", "message"),
    [
        ({"code": 1, "msg": "gateway says no"}, VenueError, "code 1: gateway says no"),
        ({"code": 400101, "message": "Invalid API key"}, VenueError, "API key was rejected"),
        ({"code": 402901, "message": "slow down"}, RateLimited, "retry after 60s"),
        ({"code": 0}, JunkResponse, "no 'data'"),
        ({"data": []}, JunkResponse, "expected {code, data}"),
        ({"code": 0, "data": {"rows": []}}, JunkResponse, "expected a list of days"),
        ({"code": 0, "data": [1]}, JunkResponse, "row 0: expected an object"),
        ({"code": 0, "data": [{"date": "2024-04-12"}]}, JunkResponse, "missing field"),
        ({"code": 0, "data": []}, JunkResponse, "no days"),
        (
            [{"date": "12/04/2024", "total_net_inflow": 1}],
            JunkResponse,
            "expected a date YYYY-MM-DD",
        ),
        ([{"date": "2024-04-12", "total_net_inflow": "lots"}], JunkResponse, "found 'lots'"),
        ([{"date": "2024-04-12", "total_net_inflow": True}], JunkResponse, "found True"),
        (
            [
                {"date": "2024-04-12", "total_net_inflow": 1},
                {"date": "2024-04-12", "total_net_inflow": 2},
            ],
            JunkResponse,
            "listed twice",
        ),
    ],
)
def test_sosovalue_junk_and_errors(payload: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        parse_summary_history(payload)
    assert message in str(info.value)
    assert str(info.value).startswith("sosovalue: ")


def test_sosovalue_tolerated_shapes() -> None:
    flows = parse_summary_history(
        {
            "code": "0",
            "data": [
                {"date": 1712880000000, "totalNetInflow": "2500000"},  # epoch ms, string number
                {"date": "2024-04-13", "total_net_inflow": None},  # not reported yet
            ],
        }
    )
    assert [str(d) for d in flows.dates] == ["2024-04-12"]
    assert flows.total[0] == 2.5
    assert "no total net inflow yet" in flows.notes[0]


# --- SoSoValue: the client ----------------------------------------------------------------------


def _soso(handler: Recorder, clock: FakeClock | None = None, **kw: Any) -> SoSoValueClient:
    clock = clock or FakeClock()
    return SoSoValueClient(
        KEY, transport=httpx.MockTransport(handler), clock=clock, sleep=clock.sleep, **kw
    )


async def test_sosovalue_client_sends_the_key_header(sample: Callable[[str], Any]) -> None:
    rec = Recorder(
        sample("sosovalue_v1_etfs_summary_history__thirdparty"),
        sample("sosovalue_v1_etf_ticker_history__docs"),
    )
    client = _soso(rec)
    flows = await client.flows(["IBIT"], limit=30)
    await client.aclose()
    first = rec.requests[0]
    assert first.headers["x-soso-api-key"] == KEY
    assert first.url.path == "/openapi/v1/etfs/summary-history"
    assert dict(first.url.params) == {"symbol": "BTC", "country_code": "US", "limit": "30"}
    assert rec.requests[1].url.path == "/openapi/v1/etfs/IBIT/history"
    assert rec.requests[1].headers["x-soso-api-key"] == KEY
    assert KEY not in str(first.url)
    assert flows.funds == ("IBIT",)
    assert [str(d) for d in flows.dates] == ["2024-04-12", "2026-05-18"]
    assert KEY not in repr(client)


@pytest.mark.parametrize(
    ("response", "error", "message"),
    [
        (
            httpx.Response(401, json={"code": 400101, "message": f"Invalid API key {KEY}"}),
            VenueError,
            "API key was rejected (Invalid API key ***",
        ),
        (
            httpx.Response(200, json={"code": 400102, "message": f"key {KEY} expired"}),
            VenueError,
            "key *** expired",
        ),
        (httpx.Response(401), VenueError, "HTTP 401: the API key is missing or invalid"),
        (
            httpx.Response(400, json={"code": 400001, "message": "bad", "details": {"k": KEY}}),
            VenueError,
            "code 400001: bad ({'k': '***'})",
        ),
        (httpx.Response(200, text=f"<html>{KEY}</html>"), JunkResponse, "invalid JSON"),
    ],
)
async def test_sosovalue_client_errors_never_leak_the_key(
    caplog: pytest.LogCaptureFixture, response: httpx.Response, error: type[Exception], message: str
) -> None:
    caplog.set_level(logging.DEBUG)
    client = _soso(Recorder(response), max_retries=0)
    with pytest.raises(error) as info:
        await client.summary_history()
    await client.aclose()
    assert message in str(info.value)
    assert KEY not in str(info.value) and KEY not in repr(info.value.args)
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert KEY not in caplog.text


async def test_sosovalue_client_429_sample(
    sample: Callable[[str], Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = sample("sosovalue_v1_rate_limit_429__docs")
    rec = Recorder(httpx.Response(429, json=body))
    clock = FakeClock()
    client = _soso(rec, clock, max_retries=1)
    with pytest.raises(RateLimited) as info:
        await client.summary_history()
    await client.aclose()
    assert info.value.retry_after_s == 45  # from the body's details.retry_after
    assert len(rec.requests) == 2 and clock.now >= T0 + 45  # waited before retrying
    assert KEY not in str(info.value) and KEY not in caplog.text


async def test_sosovalue_client_refuses_bad_input() -> None:
    with pytest.raises(InputError, match="needs an API key"):
        SoSoValueClient("  ")
    client = _soso(Recorder([]))
    with pytest.raises(InputError, match="not an ETF ticker"):
        await client.ticker_history("../admin")
    await client.aclose()


async def test_sosovalue_over_a_real_socket(sample: Callable[[str], Any]) -> None:
    async with FakeHttpServer() as server:
        server.script(
            "/openapi/v1/etfs/summary-history",
            Reply.json(sample("sosovalue_v1_rate_limit_429__docs"), status=429),
            Reply.json(sample("sosovalue_v1_etfs_summary_history__thirdparty")),
        )
        clock = FakeClock()
        client = SoSoValueClient(
            KEY, base_url=f"{server.url}/openapi/v1", clock=clock, sleep=clock.sleep
        )
        flows = await client.summary_history()
        await client.aclose()
        assert flows.total[0] == pytest.approx(-648.64056663)
        assert [r.headers["x-soso-api-key"] for r in server.requests] == [KEY, KEY]


# --- CoinGlass ETF flows ------------------------------------------------------------------------


def test_coinglass_etf_flow_history_sample(sample: Callable[[str], Any]) -> None:
    flows = parse_etf_flow_history(sample("coinglass_etf_bitcoin_flow_history__docs"))
    assert [str(d) for d in flows.dates] == ["2024-01-11"]
    assert flows.funds == ("GBTC", "IBIT", "FBTC")
    assert flows.flows[0].tolist() == pytest.approx([-95.1, 111.7, 227.0])
    assert flows.total[0] == pytest.approx(655.3)
    # The docs example lists three of the eleven funds, so they do not add up to the total.
    assert "total 655.3 differs from the sum of the listed funds 243.6" in flows.notes[0]


def test_coinglass_sample_agrees_with_farside_history(
    sample: Callable[[str], Any], shared_dir: Path
) -> None:
    path = shared_dir / "data" / "etf" / "btc_etf_flows_farside.json"
    if not path.is_file():
        pytest.skip("missing data/etf/btc_etf_flows_farside.json in ../shared")
    farside = load_flows(path).until("2024-01-11")
    glass = parse_etf_flow_history(sample("coinglass_etf_bitcoin_flow_history__docs"))
    assert glass.total[0] == pytest.approx(farside.total[0])
    for j, fund in enumerate(glass.funds):
        assert glass.flows[0, j] == pytest.approx(farside.flows[0, farside.funds.index(fund)])


def test_coinglass_net_assets_history_sample_matches_farside(
    sample: Callable[[str], Any], shared_dir: Path
) -> None:
    flows = parse_etf_net_assets_history(sample("coinglass_etf_bitcoin_net_assets_history__docs"))
    assert [str(d) for d in flows.dates] == ["2024-01-11", "2024-01-12"]
    assert flows.funds == () and flows.notes == ()
    assert flows.total.tolist() == pytest.approx([655.3, 203.0])
    path = shared_dir / "data" / "etf" / "btc_etf_flows_farside.json"
    if path.is_file():  # change_usd is the day's net flow: the real Farside totals agree
        farside = load_flows(path).until("2024-01-12")
        assert farside.total.tolist() == pytest.approx(flows.total.tolist())
    with pytest.raises(JunkResponse, match="days with 'change_usd'"):
        parse_etf_net_assets_history({"code": "0", "data": [{"timestamp": 1704931200000}]})


def test_coinglass_hk_etf_flow_history_sample(sample: Callable[[str], Any]) -> None:
    flows = parse_etf_flow_history(sample("coinglass_hk_etf_bitcoin_flow_history__docs"))
    assert [str(d) for d in flows.dates] == ["2024-04-30"]
    assert flows.funds == ("CHINAAMC", "HARVEST", "BOSERA&HASHKEY")
    assert flows.total[0] == pytest.approx(247.866)
    assert flows.notes == ()


def test_coinglass_etf_missing_fund_flow_counts_zero() -> None:
    day = 1704931200000
    payload = {
        "code": "0",
        "data": [
            {"timestamp": day + DAY_MS, "flow_usd": 1e6, "etf_flows": [{"etf_ticker": "IBIT"}]},
            {
                "timestamp": day,
                "etf_flows": [{"etf_ticker": "IBIT", "flow_usd": 2e6}, {"etf_ticker": "HYPE"}],
            },
        ],
    }
    flows = parse_etf_flow_history(payload)
    assert [str(d) for d in flows.dates] == ["2024-01-11", "2024-01-12"]  # sorted
    assert flows.funds == ("IBIT", "HYPE")
    np.testing.assert_array_equal(flows.flows, [[2.0, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(flows.total, [2.0, 1.0])  # no total: the sum of the funds


@pytest.mark.parametrize(
    ("payload", "error", "message"),
    [
        ({"code": "401", "msg": "Invalid API key"}, VenueError, "API key was rejected"),
        ({"code": "429", "msg": "Too Many Requests"}, RateLimited, "rate limited"),
        ({"code": "500", "msg": "oops"}, VenueError, "code 500: oops"),
        ({"msg": "success", "data": []}, JunkResponse, "expected {code, msg, data}"),
        ({"code": "0", "data": []}, JunkResponse, "non-empty list of days"),
        ({"code": "0", "data": [{"flow_usd": 1}]}, JunkResponse, "'timestamp' in epoch ms"),
        (
            {"code": "0", "data": [{"timestamp": 1704931200000, "flow_usd": "x"}]},
            JunkResponse,
            "flow_usd: expected a number, found 'x'",
        ),
        (
            {"code": "0", "data": [{"timestamp": 1704931200000, "etf_flows": [{"flow_usd": 1}]}]},
            JunkResponse,
            "no etf_ticker",
        ),
        (
            {"code": "0", "data": [{"timestamp": 1704931200000}, {"timestamp": 1704931200001}]},
            JunkResponse,
            "date 2024-01-11 is listed twice",
        ),
    ],
)
def test_coinglass_etf_junk_and_errors(payload: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        parse_etf_flow_history(payload)
    assert message in str(info.value)


async def test_coinglass_client_etf_flows(
    sample: Callable[[str], Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rec = Recorder(
        sample("coinglass_etf_bitcoin_flow_history__docs"),
        sample("coinglass_hk_etf_bitcoin_flow_history__docs"),
        httpx.Response(401, json={"code": "401", "msg": f"bad key {KEY}"}),
    )
    client = CoinGlassClient(KEY, transport=httpx.MockTransport(rec))
    us = await client.etf_flows()
    hk = await client.etf_flows("hk")
    with pytest.raises(VenueError) as info:
        await client.etf_flows()
    await client.aclose()
    assert us.total[0] == pytest.approx(655.3) and hk.total[0] == pytest.approx(247.866)
    assert [r.url.path for r in rec.requests] == [
        "/api/etf/bitcoin/flow-history",
        "/api/hk-etf/bitcoin/flow-history",
        "/api/etf/bitcoin/flow-history",
    ]
    assert all(r.headers["CG-API-KEY"] == KEY for r in rec.requests)
    assert str(rec.requests[0].url).startswith("https://open-api-v4.coinglass.com/")
    assert "bad key ***" in str(info.value)
    assert KEY not in str(info.value) and KEY not in caplog.text and KEY not in repr(client)


# --- EtfFeed: source choice ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bloomberg"}, "unknown ETF source 'bloomberg'; expected one of farside"),
        ({"name": "sosovalue"}, "needs an API key: set LIQBOT_SOSOVALUE_KEY"),
        ({"name": "sosovalue", "sosovalue_key": " "}, "LIQBOT_SOSOVALUE_KEY"),
        ({"name": "coinglass", "sosovalue_key": KEY}, "needs an API key: set LIQBOT_COINGLASS_KEY"),
        ({"name": "file"}, "needs the path of a flows file"),
    ],
)
def test_make_source_refuses(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as info:
        make_source(**kwargs)
    assert message in str(info.value)
    assert KEY not in str(info.value)


async def test_feed_by_name_over_mock_transport(
    sample: Callable[[str], Any], tmp_path: Path
) -> None:
    rec = Recorder(sample("coinglass_etf_bitcoin_flow_history__docs"))
    clock = FakeClock()
    feed = EtfFeed.create(
        "coinglass", tmp_path, coinglass_key=KEY, transport=httpx.MockTransport(rec), clock=clock
    )
    async with feed:
        snap = await feed.get()
    assert feed.name == "coinglass"
    assert snap.flows.funds == ("GBTC", "IBIT", "FBTC") and not snap.stale
    assert rec.requests[0].headers["CG-API-KEY"] == KEY
    cached = (tmp_path / "etf-coinglass-2026-01-14.json").read_text()
    assert KEY not in cached


async def test_file_source_is_read_every_time(tmp_path: Path) -> None:
    flows_file = tmp_path / "flows.csv"
    flows_file.write_text("date,IBIT,total_musd\n2026-01-13,1.0,1.0\n")
    feed = EtfFeed(make_source("file", file=flows_file), tmp_path / "cache", clock=FakeClock())
    assert (await feed.get()).flows.total.tolist() == [1.0]
    assert not (tmp_path / "cache").exists()  # never cached
    flows_file.write_text("date,IBIT,total_musd\n2026-01-13,2.0,2.0\n")
    assert (await feed.get(refresh=True)).flows.total.tolist() == [2.0]


# --- EtfFeed: the day cache ---------------------------------------------------------------------


def _flows(last: str = "2026-01-13", source: str = "fake") -> EtfFlows:
    days = np.arange(np.datetime64(last) - 2, np.datetime64(last) + 1)
    return EtfFlows(
        dates=days,
        funds=("IBIT", "FBTC"),
        flows=np.array([[-100.0, -50.25], [0.0, 0.0], [126.3, 351.4]]),
        total=np.array([-150.25, 0.0, 753.8]),
        notes=("fake: a note survives the cache",),
        source=source,
    )


class FakeSource:
    def __init__(self, *results: EtfFlows | Exception) -> None:
        self.results = list(results)
        self.calls = 0

    async def fetch(self) -> EtfFlows:
        self.calls += 1
        result = self.results.pop(0) if len(self.results) > 1 else self.results[0]
        if isinstance(result, Exception):
            raise result
        return result

    def source(self, name: str = "fake") -> FlowSource:
        return FlowSource(name, self.fetch)


def _same(a: EtfFlows, b: EtfFlows) -> None:
    np.testing.assert_array_equal(a.dates, b.dates)
    np.testing.assert_array_equal(a.flows, b.flows)
    np.testing.assert_array_equal(a.total, b.total)
    assert (a.funds, a.notes, a.source) == (b.funds, b.notes, b.source)


async def test_cache_is_written_atomically_and_reused_today(tmp_path: Path) -> None:
    src, clock = FakeSource(_flows()), FakeClock()
    feed = EtfFeed(src.source(), tmp_path, clock=clock)
    first = await feed.get()
    assert src.calls == 1 and not first.from_cache and not first.stale
    assert first.day == date(2026, 1, 14) and first.fetched_ms == int(T0 * 1000)
    assert [p.name for p in tmp_path.iterdir()] == ["etf-fake-2026-01-14.json"]  # no temp file
    # The cache is a flows file core.etf_io reads as it is.
    loaded = load_flows(tmp_path / "etf-fake-2026-01-14.json")
    np.testing.assert_array_equal(loaded.flows, _flows().flows)
    np.testing.assert_array_equal(loaded.total, _flows().total)
    clock.now += 3600
    assert (await feed.get()) is first and src.calls == 1
    # A new process (new feed) the same day reads the cache instead of fetching.
    again = await EtfFeed(src.source(), tmp_path, clock=clock).get()
    assert src.calls == 1 and again.from_cache and again.fetched_ms == first.fetched_ms
    _same(again.flows, _flows())
    assert again.freshness.last_update_ms == int(T0 * 1000)
    assert again.freshness.interval_ms == DAY_MS


async def test_next_day_fetches_again_and_refresh_forces(tmp_path: Path) -> None:
    src, clock = FakeSource(_flows()), FakeClock()
    feed = EtfFeed(src.source(), tmp_path, clock=clock)
    await feed.get()
    clock.now += DAY_S
    snap = await feed.get()
    assert src.calls == 2 and snap.day == date(2026, 1, 15)
    await feed.get(refresh=True)
    assert src.calls == 3
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["etf-fake-2026-01-14.json", "etf-fake-2026-01-15.json"]


async def test_max_age_refetches_within_the_day(tmp_path: Path) -> None:
    src, clock = FakeSource(_flows()), FakeClock()
    feed = EtfFeed(src.source(), tmp_path, clock=clock, max_age_s=3600)
    await feed.get()
    clock.now += 1800
    await feed.get()
    assert src.calls == 1
    clock.now += 1800
    await feed.get()
    assert src.calls == 2
    # A new process honours it for the disk cache too.
    clock.now += 4000
    other = FakeSource(_flows())
    await EtfFeed(other.source(), tmp_path, clock=clock, max_age_s=3600).get()
    assert other.calls == 1


async def test_failed_fetch_falls_back_to_the_last_cached_day(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    await EtfFeed(FakeSource(_flows()).source(), tmp_path, clock=clock).get()
    clock.now += 2 * DAY_S  # two days later, in a fresh process, the source is down
    down = FakeSource(FeedUnavailable("fake", "timed out"))
    feed = EtfFeed(down.source(), tmp_path, clock=clock, retry_s=600)
    snap = await feed.get()
    assert snap.stale and snap.error == "fake: timed out" and snap.from_cache
    assert snap.day == date(2026, 1, 14)
    _same(snap.flows, _flows())
    now_ms = int(clock.now * 1000)
    assert snap.freshness.last_update_ms == int(T0 * 1000)
    assert snap.is_stale(now_ms)
    # Freshness alone calls two-day-old daily data fresh; the snapshot says stale as it failed.
    assert feed.freshness().describe(now_ms) == "fresh (2d old)"
    assert feed.freshness().is_stale(now_ms + 1)
    assert "fetch failed" in caplog.text
    # Within retry_s the source is left alone; after it, it is tried again.
    clock.now += 60
    assert (await feed.get()) is snap and down.calls == 1
    clock.now += 600
    await feed.get()
    assert down.calls == 2


async def test_fallback_to_yesterday_in_memory(tmp_path: Path) -> None:
    clock = FakeClock()
    src = FakeSource(_flows(), DataError("the page is empty today"))
    feed = EtfFeed(src.source(), tmp_path, clock=clock)
    fresh = await feed.get()
    clock.now += DAY_S
    stale = await feed.get()
    assert stale.stale and stale.flows is fresh.flows and stale.day == fresh.day
    assert not fresh.stale


async def test_failure_without_any_cache_raises(tmp_path: Path) -> None:
    feed = EtfFeed(FakeSource(JunkResponse("fake", "no table")).source(), tmp_path)
    with pytest.raises(JunkResponse, match="no table"):
        await feed.get()


async def test_corrupt_cache_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(T0 - 2 * DAY_S)
    await EtfFeed(FakeSource(_flows()).source(), tmp_path, clock=clock).get()  # a good 01-12
    (tmp_path / "etf-fake-2026-01-13.json").write_text('{"days": []}')
    (tmp_path / "etf-fake-2026-01-14.json").write_text('{"meta": {}, "days": [')
    clock.now = T0
    src = FakeSource(_flows())
    snap = await EtfFeed(src.source(), tmp_path, clock=clock).get()
    assert src.calls == 1 and not snap.from_cache  # today's cache was unusable: fetched
    assert "etf-fake-2026-01-14.json: unusable" in caplog.text
    # Falling back skips unusable days: 01-15's failure serves 01-12, not the broken 01-13.
    (tmp_path / "etf-fake-2026-01-14.json").unlink()
    clock.now = T0 + DAY_S
    down = EtfFeed(FakeSource(FeedUnavailable("fake", "down")).source(), tmp_path, clock=clock)
    snap = await down.get()
    assert snap.stale and snap.day == date(2026, 1, 12)


async def test_other_sources_caches_are_not_used(tmp_path: Path) -> None:
    clock = FakeClock()
    await EtfFeed(FakeSource(_flows()).source("farside"), tmp_path, clock=clock).get()
    src = FakeSource(_flows(source="other"))
    snap = await EtfFeed(src.source("coinglass"), tmp_path, clock=clock).get()
    assert src.calls == 1 and snap.flows.source == "other"


async def test_future_rows_are_dropped(tmp_path: Path) -> None:
    src = FakeSource(_flows(last="2026-01-15"))  # one day after "today" (2026-01-14)
    snap = await EtfFeed(src.source(), tmp_path, clock=FakeClock()).get()
    assert str(snap.flows.dates[-1]) == "2026-01-14"


async def test_old_cache_days_are_pruned(tmp_path: Path) -> None:
    clock = FakeClock()
    feed = EtfFeed(FakeSource(_flows()).source(), tmp_path, clock=clock, keep_days=3)
    for _ in range(5):
        await feed.get()
        clock.now += DAY_S
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"etf-fake-2026-01-{d}.json" for d in (16, 17, 18)]


async def test_unwritable_cache_still_serves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache dir should be")
    snap = await EtfFeed(FakeSource(_flows()).source(), blocker, clock=FakeClock()).get()
    assert not snap.stale and len(snap.flows) == 3
    assert "cannot write" in caplog.text


async def test_zero_fund_flows_round_trip_the_cache(
    sample: Callable[[str], Any], tmp_path: Path
) -> None:
    flows = parse_summary_history(sample("sosovalue_v1_etfs_summary_history__docs"))
    clock = FakeClock()
    await EtfFeed(FakeSource(flows).source("sosovalue"), tmp_path, clock=clock).get()
    snap = await EtfFeed(FakeSource(flows).source("sosovalue"), tmp_path, clock=clock).get()
    assert snap.from_cache
    _same(snap.flows, flows)
