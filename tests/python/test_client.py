"""ferry.Client against a real ferryd: results, every reachable error, raw calls, priority,
concurrency."""

from __future__ import annotations

import asyncio
import functools
import time

import pytest

import ferry
from conftest import WAIT, demo_toml, is_prime, plugin, plugin_status, status_until
from fake_server import FakeServer
from ferry import _wire

PRIMES = {112272535095293: True, 112582705942171: True, 115280095190773: True,
          115797848077099: True, 1099726899285419: False}


# --- results ----------------------------------------------------------------------------

async def test_typed_calls_return_decoded_json(client):
    for n, expected in PRIMES.items():
        assert await client.call("primes.is_prime", n) is expected
    assert await client.call("primes.factorize", 360) == [2, 2, 2, 3, 3, 5]
    value = {"k": [1, 2.5, None, True, "é\u2603"], "n": -(2**53)}
    assert await client.call("demo.echo", value) == value


async def test_connect_works_awaited_and_as_context_manager(ferryd):
    client = await ferry.connect(ferryd.socket)
    try:
        assert await client.call("demo.echo", 1) == 1
        assert client.server_version == (1, 2)
        assert client.max_frame_bytes == 16 << 20
    finally:
        await client.aclose()
    assert client.closed
    async with ferry.connect(ferryd.socket) as c2:
        assert await c2.call("demo.echo", 2) == 2
    assert c2.closed


async def test_connect_defaults_to_ferry_socket_env(ferryd, monkeypatch):
    monkeypatch.setenv("FERRY_SOCKET", ferryd.socket)
    async with ferry.connect() as c:
        assert c.path == ferryd.socket
        assert await c.call("primes.is_prime", 13) is True
    monkeypatch.delenv("FERRY_SOCKET")
    assert ferry.default_path() == "/tmp/ferry.sock"


async def test_connect_to_a_missing_socket_raises_oserror(tmp_path):
    with pytest.raises(OSError):
        await ferry.connect(str(tmp_path / "nobody.sock"))


async def test_call_raw_carries_every_byte_value(client):
    data = bytes(range(256)) * 3
    assert await client.call_raw("demo.echo_raw", data) == data
    assert await client.call_raw("demo.echo_raw", b"") == b""
    assert await client.call_raw("demo.echo_raw", bytearray(b"\x00\xff")) == b"\x00\xff"
    assert await client.call_raw("demo.noop", b"") == b"null"


async def test_call_raw_refuses_str_payloads(client):
    with pytest.raises(TypeError, match="bytes"):
        await client.call_raw("demo.echo_raw", "text")


async def test_call_sends_a_compact_json_array(client, monkeypatch):
    sent = []
    request = client._conn.request

    async def spy(fn, payload, timeout, priority):
        sent.append(payload)
        return await request(fn, payload, timeout, priority)

    monkeypatch.setattr(client._conn, "request", spy)
    # echo_raw answers the payload's bytes: what call() put on the wire.
    assert await client.call("demo.echo_raw", 1, "a", {"b": None}) == [1, "a", {"b": None}]
    assert await client.call("demo.echo_raw") == []
    assert sent == [b'[1,"a",{"b":null}]', b"[]"]


async def test_large_payloads_near_the_limit(client):
    big = "x" * (4 << 20)
    assert await client.call("demo.echo", big) == big
    data = bytes(range(256)) * ((client.max_frame_bytes - 8 - len("demo.echo_raw")) // 256)
    assert await client.call_raw("demo.echo_raw", data) == data


async def test_ping_echoes_its_body(client):
    assert await client.ping() == b""
    assert await client.ping(bytes(range(256))) == bytes(range(256))
    assert client.in_flight == 0


async def test_priorities_are_accepted(client):
    for prio in ("normal", "high", "low"):
        assert await client.call("primes.is_prime", 7, priority=prio) is True
    with pytest.raises(ValueError, match="priority"):
        await client.call("primes.is_prime", 7, priority="urgent")


async def test_priority_is_sent_in_the_call_frame(tmp_path):
    async with FakeServer(str(tmp_path / "s.sock")) as fake, ferry.connect(fake.path) as c:
        conn = await fake.accept()
        typed, raw = functools.partial(c.call, "x.y"), functools.partial(c.call_raw, "x.y", b"")
        for prio, byte in (("normal", 0), ("high", 1), ("low", 2)):
            for call in (typed, raw):
                task = asyncio.create_task(call(priority=prio))
                f = await conn.frame()
                assert (f.type, f.body[4]) == (_wire.CALL, byte), prio  # docs/protocol.md §3.2
                conn.send(_wire.encode_result(f.call_id, b"null"))
                await task


async def test_high_priority_calls_run_before_queued_lower_ones(make_ferryd):
    d = make_ferryd(demo_toml("thread", workers=1), plugins=[plugin("demo")])
    async with ferry.connect(d.socket) as c:
        holder = asyncio.create_task(c.call("demo.sleep_ms", 30000))
        await status_until(c, "demo", lambda s: s["running"] == 1, "the only thread busy")
        finished: list[str] = []
        calls = []
        for prio in ("low", "normal", "high"):  # sent (and queued) in this order
            calls.append(asyncio.create_task(c.call("demo.echo", prio, priority=prio)))
            calls[-1].add_done_callback(lambda t: finished.append(t.result()))
        await status_until(c, "demo", lambda s: s["queued"] == 3, "the three calls queued")
        holder.cancel()
        assert await asyncio.wait_for(asyncio.gather(*calls), WAIT) == ["low", "normal", "high"]
        assert finished == ["high", "normal", "low"]


# --- errors -------------------------------------------------------------------------------

async def test_unknown_function(client):
    with pytest.raises(ferry.UnknownFunction) as e:
        await client.call("nope.nothing")
    assert e.value.code == "unknown_function" and e.value.code_number == 1
    assert "nope.nothing" in str(e.value)


async def test_bad_request_for_wrong_arguments_and_non_json(client):
    with pytest.raises(ferry.BadRequest) as e:
        await client.call("demo.echo", 1, 2)
    assert e.value.code == "bad_request" and str(e.value)
    with pytest.raises(ferry.BadRequest):
        await client.call_raw("primes.is_prime", b"not json")
    assert await client.call("demo.echo", "still fine") == "still fine"  # connection unharmed


async def test_plugin_error_carries_the_plugin_message(client):
    with pytest.raises(ferry.PluginError) as e:
        await client.call("demo.fail", "boom: the message")
    assert str(e.value) == "boom: the message" and e.value.message == "boom: the message"


async def test_timeout_is_answered_at_the_deadline(client):
    start = time.monotonic()
    with pytest.raises(ferry.Timeout) as e:
        await client.call("demo.sleep_ms", 5000, timeout=0.2)
    elapsed = time.monotonic() - start
    assert e.value.code == "timeout" and isinstance(e.value, TimeoutError)
    assert 0.19 <= elapsed < 4.0, elapsed
    assert await client.call("demo.sleep_ms", 1, timeout=5) == 1


async def test_worker_crashed_in_process_mode(client):
    with pytest.raises(ferry.WorkerCrashed) as e:
        await client.call("demo.crash")
    assert e.value.code == "worker_crashed" and e.value.retryable
    assert await client.call("demo.echo", "after the crash") == "after the crash"


async def test_busy_when_the_queue_is_full(thread_client):
    c = thread_client  # demo: 2 threads, queue_limit 2
    sleepers = [asyncio.create_task(c.call("demo.sleep_ms", 30000)) for _ in range(4)]
    await status_until(c, "demo", lambda s: s["running"] == 2 and s["queued"] == 2,
                       "2 sleepers running and 2 queued")
    with pytest.raises(ferry.Busy) as e:
        await c.call("demo.echo", 1)
    assert e.value.code == "busy" and e.value.retryable
    for t in sleepers:
        t.cancel()
    await asyncio.gather(*sleepers, return_exceptions=True)
    await status_until(c, "demo", lambda s: s["running"] == 0 and s["queued"] == 0,
                       "the sleepers cancelled")


async def test_unsupported_version_from_a_major_2_hello(ferryd):
    with pytest.raises(ferry.UnsupportedVersion) as e:
        await ferry.client._open(ferryd.socket, major=2, minor=0)
    assert e.value.code == "unsupported_version" and e.value.code_number == 13
    assert "2.0" in str(e.value)


async def test_cancelled_reply_over_the_raw_protocol(ferryd):
    # The client itself never surfaces `cancelled` (a cancelled task raises
    # CancelledError), so this speaks the protocol by hand and maps the reply.
    reader, writer = await asyncio.open_unix_connection(ferryd.socket)
    try:
        writer.write(_wire.encode_hello())
        header = _wire.parse_header(await reader.readexactly(16))
        assert _wire.decode_hello(await reader.readexactly(header.length)).major == 1
        writer.write(_wire.encode_call(9, b"demo.sleep_ms", b"[30000]") + _wire.encode_cancel(9))
        header = _wire.parse_header(await asyncio.wait_for(reader.readexactly(16), 20))
        assert (header.type, header.call_id) == (_wire.ERROR, 9)
        err = ferry.error_for(*_wire.decode_error(await reader.readexactly(header.length)))
        assert type(err) is ferry.Cancelled and err.code == "cancelled"
        assert str(err) == "cancelled by the client"
    finally:
        writer.close()


# --- local validation: refused before sending, the connection stays usable --------------

@pytest.mark.parametrize("name", ["", "x" * 256, "bad\nname", "bad\x7fname"])
async def test_bad_names_are_refused_locally(client, name):
    with pytest.raises(ferry.BadRequest, match="not sent"):
        await client.call(name)
    assert await client.call("demo.echo", 3) == 3


async def test_oversized_calls_are_refused_locally(client):
    payload = b"x" * (client.max_frame_bytes - 8 - len("demo.echo_raw") + 1)
    with pytest.raises(ferry.BadRequest, match="max_frame_bytes"):
        await client.call_raw("demo.echo_raw", payload)
    with pytest.raises(ferry.BadRequest, match="max_frame_bytes"):
        await client.ping(b"x" * (client.max_frame_bytes + 1))
    assert await client.call("demo.echo", 4) == 4


async def test_unserializable_arguments_raise_before_sending(client):
    with pytest.raises(TypeError):
        await client.call("demo.echo", object())
    assert client.in_flight == 0
    assert await client.call("demo.echo", 5) == 5


# --- concurrency --------------------------------------------------------------------------

async def test_10000_concurrent_calls_on_one_connection(client):
    numbers = list(range(10_000_000, 10_010_000))
    got = await asyncio.gather(*(client.call("primes.is_prime", n) for n in numbers))
    assert got == [is_prime(n) for n in numbers]
    assert client.in_flight == 0


async def test_replies_in_any_order_are_matched_by_id(client):
    delays = [300, 200, 100, 0]
    got = await asyncio.gather(*(client.call("demo.sleep_ms", ms) for ms in delays),
                               client.ping(b"p"))
    assert got == delays + [b"p"]


async def test_100000_calls_in_flight_complete(client):
    payloads = [i.to_bytes(4, "little") for i in range(100_000)]
    peak = 0
    done = False

    async def watch():
        nonlocal peak
        while not done:
            peak = max(peak, client.write_buffer_size)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    start = time.monotonic()
    got = await asyncio.wait_for(
        asyncio.gather(*(client.call_raw("demo.echo_raw", p) for p in payloads)), 120)
    done = True
    await watcher
    assert got == payloads
    # The frames total about 4.1 MB; flow control keeps far less of them buffered.
    assert peak < 1 << 20, f"the write buffer grew to {peak} bytes"
    assert client.in_flight == 0
    print(f"100,000 calls in {time.monotonic() - start:.2f} s; write buffer peak {peak} B")


async def test_concurrent_calls_are_batched_into_few_writes(client):
    writes = 0
    transport = client._conn._transport
    real_write = transport.write

    def counting_write(data):
        nonlocal writes
        writes += 1
        real_write(data)

    transport.write = counting_write
    try:
        await asyncio.gather(*(client.call("primes.is_prime", n) for n in range(1000)))
    finally:
        del transport.write
    print(f"1,000 concurrent calls: {writes} writes")
    assert 1 <= writes <= 5, f"1,000 concurrent calls took {writes} writes"


async def test_status_shows_the_plugins(client):
    st = await plugin_status(client, "demo")
    assert st["executor"] == "process" and "demo.echo_raw" in st["functions"]
