"""The connection's life: flow control against a server that stops reading, lost
connections, connection-level errors, shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

import ferry
from conftest import WAIT, demo_toml, PRIMES_TOML, status_until, until
from ferry import _wire
from fake_server import FakeServer, call_payload
from test_wire import CALL_IS_PRIME_7, CANCEL_1, ERROR_UNKNOWN, HELLO_CLIENT, RESULT_TRUE


async def test_the_client_speaks_the_documented_bytes(tmp_path):
    # docs/protocol.md §9: the client's own frames, byte for byte, and its
    # reading of the documented replies.
    async with FakeServer(str(tmp_path / "s.sock")) as fake:
        async with ferry.connect(fake.path) as client:
            conn = await fake.accept()
            task = asyncio.create_task(client.call("primes.is_prime", 7))
            assert await conn.reader.readexactly(len(CALL_IS_PRIME_7)) == CALL_IS_PRIME_7
            conn.send(RESULT_TRUE)
            assert await task is True
        async with ferry.connect(fake.path) as client:
            conn = await fake.accept()
            task = asyncio.create_task(client.call("primes.is_prime", 7))
            await conn.reader.readexactly(len(CALL_IS_PRIME_7))
            conn.send(ERROR_UNKNOWN)
            with pytest.raises(ferry.UnknownFunction, match="^no such function$"):
                await task
        async with ferry.connect(fake.path) as client:
            conn = await fake.accept()
            task = asyncio.create_task(client.call("primes.is_prime", 7))
            await conn.reader.readexactly(len(CALL_IS_PRIME_7))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await conn.reader.readexactly(16) == CANCEL_1
        assert fake.hellos == [HELLO_CLIENT] * 3


async def test_flow_control_bounds_the_buffer_when_the_server_stops_reading(tmp_path):
    n, dropped = 30_000, 100
    async with FakeServer(str(tmp_path / "fake.sock")) as fake:
        async with ferry.connect(fake.path) as client:
            conn = await fake.accept()
            calls = [asyncio.create_task(client.call_raw("x.y", i.to_bytes(4, "little")))
                     for i in range(n)]
            # The server reads nothing: the kernel buffers fill, the transport
            # pauses writing, and the remaining callers wait instead of buffering.
            await until(lambda: _paused(client), "the transport paused writing")
            buffered, sent = client.write_buffer_size, client.in_flight
            print(f"paused with {buffered} B buffered, {sent} calls sent, {n - sent} waiting")
            assert buffered < 1 << 20, f"{buffered} bytes buffered while paused"
            assert sent < n - dropped, "every call was written into a full socket"
            # Callers that give up while waiting to write leave without a trace.
            for t in calls[-dropped:]:
                t.cancel()
            # Now serve: the waiting calls go out in order, each exactly once.
            for i in range(n - dropped):
                f = await conn.frame()
                assert (f.type, f.call_id) == (_wire.CALL, i + 1)
                conn.send(_wire.encode_result(f.call_id, call_payload(f.body)))
            got = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), WAIT)
            assert got[:n - dropped] == [i.to_bytes(4, "little") for i in range(n - dropped)]
            assert all(isinstance(r, asyncio.CancelledError) for r in got[n - dropped:])
            assert await asyncio.wait_for(_next_frame_type(client, conn), WAIT) == _wire.PING
            assert client.in_flight == 0


async def test_aclose_returns_when_the_server_stops_reading(tmp_path):
    # close() would wait for the write buffer to drain, which never happens here.
    async with FakeServer(str(tmp_path / "fake.sock")) as fake:
        client = await ferry.connect(fake.path)
        conn = await fake.accept()  # and never reads
        calls = [asyncio.create_task(client.call_raw("x.y", bytes(1000))) for _ in range(5000)]
        await until(lambda: _paused(client), "the transport paused writing")
        assert client._conn._transport.get_write_buffer_size() > 0
        await asyncio.wait_for(client.aclose(), WAIT)
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), WAIT)
        assert all(isinstance(r, ferry.ConnectionLost) for r in results)
        assert client.closed and client.in_flight == 0
        conn.close()


async def _next_frame_type(client, conn) -> int:
    """Sends a PING and returns the type of the next frame the server reads."""
    pong = asyncio.create_task(client.ping())
    f = await conn.frame()
    conn.send(_wire.encode_frame(_wire.PONG, f.call_id, f.body))
    await pong
    return f.type


async def _paused(client: ferry.Client) -> bool:
    await asyncio.sleep(0)
    return client._conn._paused


async def test_sigkill_fails_every_pending_call_with_connection_lost(make_ferryd):
    d = make_ferryd()
    async with ferry.connect(d.socket) as client:
        calls = [asyncio.create_task(client.call("demo.sleep_ms", 30000)) for _ in range(5)]
        calls.append(asyncio.create_task(client.call("primes.is_prime", 7)))
        assert await calls[-1] is True
        await status_until(client, "demo", lambda s: s["running"] + s["queued"] == 5,
                           "5 sleepers admitted")
        d.stop(signal.SIGKILL)
        results = await asyncio.wait_for(asyncio.gather(*calls[:5], return_exceptions=True), WAIT)
        assert all(isinstance(r, ferry.ConnectionLost) for r in results), results
        assert all(isinstance(r, ConnectionError) for r in results)
        assert client.closed
        with pytest.raises(ferry.ConnectionLost):
            await client.call("primes.is_prime", 7)


async def test_a_connection_level_error_fails_every_call(ferryd):
    async with ferry.connect(ferryd.socket) as client:
        pending = [asyncio.create_task(client.call("demo.sleep_ms", 30000)) for _ in range(3)]
        assert await client.ping() == b""  # the calls are on the server
        # A frame type the server does not know: it answers ERROR with call_id 0 and closes.
        client._conn._write(_wire._HEADER.pack(0, 9, 0, 0, 0))
        results = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), WAIT)
        for r in results:
            assert isinstance(r, ferry.ConnectionLost), r
            assert isinstance(r.server_error, ferry.BadRequest)
            assert "unknown frame type" in str(r)  # the server's message
        with pytest.raises(ferry.ConnectionLost):
            await client.call("demo.echo", 1)


async def test_close_fails_pending_calls_and_the_server_cancels_them(ferryd_thread):
    async with ferry.connect(ferryd_thread.socket) as watcher:
        client = await ferry.connect(ferryd_thread.socket)
        call = asyncio.create_task(client.call("demo.sleep_ms", 30000))
        await status_until(watcher, "demo", lambda s: s["running"] == 1, "the sleeper running")
        await client.aclose()
        with pytest.raises(ferry.ConnectionLost, match="closed by the client"):
            await call
        await status_until(watcher, "demo", lambda s: s["running"] == 0,
                           "the server cancelled the closed connection's call")


async def test_sigterm_answers_running_calls_shutting_down(make_ferryd):
    d = make_ferryd(PRIMES_TOML + demo_toml("thread"), server_toml="drain_timeout_ms = 300\n")
    async with ferry.connect(d.socket) as client:
        call = asyncio.create_task(client.call("demo.sleep_ms", 30000))
        await status_until(client, "demo", lambda s: s["running"] == 1, "the sleeper running")
        d.proc.send_signal(signal.SIGTERM)
        # The server unlinks its socket when it starts draining: from then on new calls
        # are refused too.
        await until(_gone(d.socket), "ferryd started draining (socket unlinked)")
        with pytest.raises(ferry.ShuttingDown) as e:
            await asyncio.wait_for(client.call("primes.is_prime", 7), WAIT)
        assert e.value.code == "shutting_down" and e.value.retryable
        start = time.monotonic()
        with pytest.raises(ferry.ShuttingDown, match="drain timeout"):
            await asyncio.wait_for(call, WAIT)
        assert time.monotonic() - start < 10
    assert d.stop() == 0


def _gone(path: str):
    async def probe():
        return not os.path.exists(path)
    return probe
