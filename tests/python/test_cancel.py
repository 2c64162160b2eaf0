"""Cancelling the awaiting task sends CANCEL; the server drops or stops the call; the id
stays reserved until the server's one reply for it, which is then ignored."""

from __future__ import annotations

import asyncio

import pytest

import ferry
from conftest import plugin_status, status_until, until
from fake_server import FakeServer
from ferry import _wire


async def cancel_and_wait(task: asyncio.Task) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# --- the client's side, against a scripted server ----------------------------------------

async def test_the_id_stays_reserved_until_the_late_reply_which_is_dropped(tmp_path):
    async with FakeServer(str(tmp_path / "s.sock")) as fake, ferry.connect(fake.path) as client:
        conn = await fake.accept()
        task = asyncio.create_task(client.call("x.slow", 1))
        call = await conn.frame()
        assert (call.type, call.call_id) == (_wire.CALL, 1)
        await cancel_and_wait(task)
        cancel = await conn.frame()
        assert (cancel.type, cancel.call_id, cancel.body) == (_wire.CANCEL, 1, b"")
        assert client.in_flight == 1  # answered by nobody yet: id 1 is still taken
        # A new call never reuses id 1 while it is reserved.
        second = asyncio.create_task(client.call("x.fast", 2))
        assert (await conn.frame()).call_id == 2
        # The late reply to the cancelled call crosses the CANCEL; it is dropped.
        conn.send(_wire.encode_result(1, b'"late"') + _wire.encode_result(2, b'"second"'))
        assert await second == "second"
        assert client.in_flight == 0
        assert not client.closed


async def test_a_late_error_for_a_cancelled_call_is_dropped_too(tmp_path):
    async with FakeServer(str(tmp_path / "s.sock")) as fake, ferry.connect(fake.path) as client:
        conn = await fake.accept()
        task = asyncio.create_task(client.call("x.slow"))
        await conn.frame()
        await cancel_and_wait(task)
        assert (await conn.frame()).type == _wire.CANCEL
        conn.send(_wire.encode_error(1, 5, "cancelled by the client"))
        pong = asyncio.create_task(client.ping(b"after"))
        ping = await conn.frame()
        conn.send(_wire.encode_frame(_wire.PONG, ping.call_id, ping.body))
        assert await pong == b"after"
        assert client.in_flight == 0


async def test_no_cancel_is_sent_to_a_1_0_server(tmp_path):
    async with FakeServer(str(tmp_path / "s.sock"), minor=0) as fake, \
            ferry.connect(fake.path) as client:
        assert client.server_version == (1, 0)
        conn = await fake.accept()
        task = asyncio.create_task(client.call("x.slow"))
        await conn.frame()
        await cancel_and_wait(task)
        pong = asyncio.create_task(client.ping())
        nxt = await conn.frame()
        assert nxt.type == _wire.PING, "a CANCEL went to a server that does not know it"
        conn.send(_wire.encode_result(1, b"1") + _wire.encode_frame(_wire.PONG, nxt.call_id))
        assert await pong == b""
        assert client.in_flight == 0


async def test_no_cancel_when_the_reply_already_arrived(tmp_path):
    async with FakeServer(str(tmp_path / "s.sock")) as fake, ferry.connect(fake.path) as client:
        conn = await fake.accept()
        task = asyncio.create_task(client.call("x.y"))
        await conn.frame()
        # The reply is read, then the task is cancelled before it resumes: nothing to cancel.
        client._conn.data_received(_wire.encode_result(1, b"true"))
        await cancel_and_wait(task)
        pong = asyncio.create_task(client.ping())
        nxt = await conn.frame()
        assert nxt.type == _wire.PING, "CANCEL sent for a call already answered"
        conn.send(_wire.encode_frame(_wire.PONG, nxt.call_id))
        await pong
        assert client.in_flight == 0


# --- reaching the real server ------------------------------------------------------------

async def test_thread_mode_cancel_stops_a_running_call(ferryd_thread, thread_client):
    c = thread_client
    before = await plugin_status(c, "demo")
    task = asyncio.create_task(c.call("demo.sleep_ms", 30000))
    await status_until(c, "demo", lambda s: s["running"] == 1, "the call running")
    await cancel_and_wait(task)
    st = await status_until(c, "demo", lambda s: s["running"] == 0 and s["queued"] == 0,
                            "the cancelled call gone")
    assert st["completed"] == before["completed"] + 1
    assert st["stuck"] == 0  # the function saw ctx.cancelled() and returned
    assert await c.ping() == b"" and c.in_flight == 0  # the `cancelled` reply came and went
    await until(_log_has(ferryd_thread, "sleep_ms cancelled after"),
                "demo.sleep_ms logging that it saw the cancellation")


async def test_thread_mode_cancel_drops_a_queued_call(ferryd_thread, thread_client):
    c = thread_client
    noticed = ferryd_thread.log().count("sleep_ms cancelled after")
    running = [asyncio.create_task(c.call("demo.sleep_ms", 30000)) for _ in range(2)]
    await status_until(c, "demo", lambda s: s["running"] == 2, "both threads busy")
    queued = asyncio.create_task(c.call("demo.sleep_ms", 30000))
    await status_until(c, "demo", lambda s: s["queued"] == 1, "the third call queued")
    await cancel_and_wait(queued)
    st = await status_until(c, "demo", lambda s: s["queued"] == 0, "the queued call dropped")
    assert st["running"] == 2
    for t in running:
        await cancel_and_wait(t)
    st = await status_until(c, "demo", lambda s: s["running"] == 0, "the sleepers cancelled")
    # The dropped call never ran: only the two sleepers noticed a cancellation.
    count = _log_count(ferryd_thread, "sleep_ms cancelled after")
    await until(lambda: _at_least(count, noticed + 2), "both sleepers logging their cancellation")
    assert ferryd_thread.log().count("sleep_ms cancelled after") == noticed + 2


async def test_process_mode_cancel_reaches_the_worker(client):
    before = await plugin_status(client, "demo")
    task = asyncio.create_task(client.call("demo.sleep_ms", 30000))
    busy = await status_until(client, "demo", lambda s: s["running"] == 1, "the call running")
    pid = next(p["pid"] for p in busy["processes"] if p["state"] == "busy")
    await cancel_and_wait(task)
    # demo.sleep_ms waits on ctx.sleep_for: it returns at once, so its worker
    # stays (one that ignored the cancel would be killed 100 ms later).
    st = await status_until(
        client, "demo",
        lambda s: s["running"] == 0 and s["completed"] == before["completed"] + 1,
        "the cancelled call returned")
    assert st["restarts"] == before["restarts"]
    assert pid in [p["pid"] for p in st["processes"]]
    assert await client.call("demo.echo", "served") == "served"


async def test_wait_for_timeout_cancels_on_the_server(thread_client):
    c = thread_client
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(c.call("demo.sleep_ms", 30000), 0.2)
    await status_until(c, "demo", lambda s: s["running"] == 0 and s["queued"] == 0,
                       "the timed-out call cancelled")
    assert await c.ping() == b"" and c.in_flight == 0


async def test_many_cancelled_calls_leave_the_connection_healthy(client):
    tasks = [asyncio.create_task(client.call_raw("demo.echo_raw", b"%d" % i)) for i in range(2000)]
    # By the PONG every call was sent (the tasks ran while the ping was awaited),
    # so the cancels below meet calls queued, running or already answered.
    assert await client.ping() == b""
    cancelled = [t.cancel() for t in tasks[::2]]  # False: that task had already finished
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for i, r in enumerate(results):
        if i % 2 or not cancelled[i // 2]:
            assert r == b"%d" % i
        else:
            assert isinstance(r, asyncio.CancelledError)
    await until(_no_calls_in_flight(client), "every cancelled call answered")
    assert await client.call("primes.is_prime", 97) is True


def _log_has(d, text: str):
    async def probe():
        return text in d.log()
    return probe


def _log_count(d, text: str):
    return lambda: d.log().count(text)


async def _at_least(count, n: int) -> bool:
    return count() >= n


def _no_calls_in_flight(client):
    async def probe():
        await client.ping()
        return client.in_flight == 0
    return probe
