"""Streamed partial results (protocol 1.2): `async for part in client.stream(...)`,
against the real ferryd in both executors and against scripted servers."""

from __future__ import annotations

import asyncio
import gc

import pytest

import ferry
from conftest import demo_toml, fixture_plugin, plugin, status_until, until
from fake_server import FakeServer, call_payload
from ferry import _wire


def stream_toml(executor: str) -> str:
    return demo_toml(executor) + f'[plugins.stream]\nexecutor = "{executor}"\nworkers = 2\n'


@pytest.fixture(params=["thread", "process"])
def streaming_ferryd(request, make_ferryd):
    return make_ferryd(stream_toml(request.param),
                       plugins=[plugin("demo"), fixture_plugin("fixture_stream")])


# --- the real server ---------------------------------------------------------------------

async def test_partials_come_in_order_then_the_result(streaming_ferryd):
    async with ferry.connect(streaming_ferryd.socket) as client:
        assert client.server_version == (1, 2)
        stream = client.stream("demo.count", 100, 0)
        assert [part async for part in stream] == list(range(1, 101))
        assert stream.result == 100
        # Two at once on one connection keep their own order.
        a, b = client.stream("demo.count", 50, 0), client.stream("demo.count", 60, 1)

        async def drain(s):
            return [part async for part in s], s.result

        assert await asyncio.gather(drain(a), drain(b)) == [(list(range(1, 51)), 50),
                                                              (list(range(1, 61)), 60)]
        assert client.in_flight == 0


async def test_raw_partials_and_errors(streaming_ferryd):
    async with ferry.connect(streaming_ferryd.socket) as client:
        raw = client.stream_raw("stream.raw_parts", b"[]")
        assert [part async for part in raw] == [b"not json", b"", b"\xff"]
        assert raw.result == b'"done"'
        bad = client.stream("demo.count", -1, 0)
        with pytest.raises(ferry.BadRequest):
            async for _ in bad:
                pytest.fail("no partial comes before this error")
        with pytest.raises(ferry.BadRequest):
            bad.result  # noqa: B018  (the property raises the call's error)
        unfinished = client.stream("demo.count", 2, 0)
        with pytest.raises(asyncio.InvalidStateError):
            unfinished.result  # noqa: B018
        assert [p async for p in unfinished] == [1, 2]


async def test_cancelling_the_consuming_task_cancels_the_call(streaming_ferryd):
    async with ferry.connect(streaming_ferryd.socket) as client:
        got: list[int] = []
        three = asyncio.Event()

        async def consume():
            async for part in client.stream("demo.count", 1000000, 2):  # would run 2000 s
                got.append(part)
                if len(got) == 3:
                    three.set()

        task = asyncio.create_task(consume())
        await three.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert got[:3] == [1, 2, 3]
        # The function saw the CANCEL and stopped; the one `cancelled` reply came and went.
        st = await status_until(client, "demo", lambda s: s["running"] == 0, "the count stopped")
        assert st["restarts"] == 0
        assert await client.ping(b"x") == b"x"
        assert client.in_flight == 0


async def test_leaving_early_or_dropping_a_stream_cancels_it(streaming_ferryd):
    async with ferry.connect(streaming_ferryd.socket) as client:
        async with client.stream("demo.count", 1000000, 2) as stream:
            async for part in stream:
                if part == 2:
                    break
        await status_until(client, "demo", lambda s: s["running"] == 0, "the first count stopped")
        dropped = client.stream("demo.count", 1000000, 2)
        assert await dropped.__anext__() == 1
        del dropped
        gc.collect()
        await status_until(client, "demo", lambda s: s["running"] == 0, "the dropped count stopped")
        assert await client.call("demo.echo", "still fine") == "still fine"


# --- scripted servers --------------------------------------------------------------------

async def test_a_1_1_server_is_never_asked_for_partials(tmp_path):
    async with FakeServer(str(tmp_path / "s.sock"), minor=1) as fake, ferry.connect(fake.path) as client:
        conn = await fake.accept()
        with pytest.raises(ferry.UnsupportedVersion, match="1.1"):
            client.stream("demo.count", 3, 0)
        pong = asyncio.create_task(client.ping(b"p"))
        first = await conn.frame()
        assert first.type == _wire.PING  # nothing was sent before it
        conn.send(_wire.encode_frame(_wire.PONG, first.call_id, first.body))
        assert await pong == b"p"


async def test_the_call_asks_for_partials_and_late_ones_are_dropped(tmp_path):
    async with FakeServer(str(tmp_path / "s.sock"), minor=2) as fake, ferry.connect(fake.path) as client:
        conn = await fake.accept()
        stream = client.stream("x.count", 2)
        task = asyncio.create_task(stream.__anext__())
        call = await conn.frame()
        assert call.type == _wire.CALL
        assert call.body[5] == _wire.CALL_PARTIALS
        assert call_payload(call.body) == b"[2]"
        conn.send(_wire.encode_partial(call.call_id, b"1") + _wire.encode_partial(call.call_id, b"2")
                  + _wire.encode_result(call.call_id, b"2")
                  + _wire.encode_partial(call.call_id, b"3"))  # after the reply: a broken server's
        assert await task == 1
        assert [p async for p in stream] == [2]
        assert stream.result == 2
        assert not client.closed


async def test_a_slow_consumer_stops_the_client_reading(tmp_path):
    async with FakeServer(str(tmp_path / "s.sock"), minor=2) as fake, ferry.connect(fake.path) as client:
        conn = await fake.accept()
        stream = client.stream_raw("x.big", b"")
        first = asyncio.create_task(stream.__anext__())
        call = await conn.frame()
        chunk = b"x" * 65536
        conn.send(b"".join(_wire.encode_partial(call.call_id, chunk) for _ in range(100)))  # 6.4 MiB
        assert await first == chunk
        loop_conn = client._conn

        async def paused():
            return loop_conn._reading_paused

        await until(paused, "the client stops reading past 4 MiB of unread partials")
        conn.send(_wire.encode_result(call.call_id, b"done"))
        parts = [p async for p in stream]
        assert len(parts) == 99 and stream.result == b"done"
        assert not loop_conn._reading_paused and loop_conn._held == 0
