"""ferry.FerryExecutor and ferry.fn: run_in_executor, submit, map, shutdown, cancellation."""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import threading
import time

import pytest

import ferry
from conftest import WAIT, plugin_status, status_until, until
from fake_server import FakeServer

PRIMES = [112272535095293, 112582705942171, 115280095190773, 115797848077099, 1099726899285419]
is_prime = ferry.fn("primes.is_prime")
sleep_ms = ferry.fn("demo.sleep_ms")


@pytest.fixture
def pool(ferryd):
    with ferry.FerryExecutor(ferryd.socket) as p:
        yield p


@pytest.fixture
def thread_pool(ferryd_thread):
    with ferry.FerryExecutor(ferryd_thread.socket) as p:
        yield p


async def test_run_in_executor_gathers_results_in_order(pool):
    loop = asyncio.get_running_loop()
    flags = await asyncio.gather(*(loop.run_in_executor(pool, is_prime, n) for n in PRIMES))
    assert flags == [True, True, True, True, False]


async def test_run_in_executor_works_in_debug_mode(pool):
    loop = asyncio.get_running_loop()
    loop.set_debug(True)  # checks that the function is callable
    try:
        assert await loop.run_in_executor(pool, is_prime, 7) is True
    finally:
        loop.set_debug(False)


async def test_errors_arrive_as_ferry_exceptions(pool):
    loop = asyncio.get_running_loop()
    with pytest.raises(ferry.UnknownFunction):
        await loop.run_in_executor(pool, ferry.fn("nope.nothing"))
    with pytest.raises(ferry.Timeout):
        await loop.run_in_executor(pool, ferry.fn("demo.sleep_ms", timeout=0.1), 5000)
    assert await loop.run_in_executor(pool, is_prime, 13) is True


async def test_cancelling_the_asyncio_future_cancels_on_the_server(thread_pool, thread_client):
    loop = asyncio.get_running_loop()
    c = thread_client
    before = await plugin_status(c, "demo")
    fut = loop.run_in_executor(thread_pool, sleep_ms, 30000)
    await status_until(c, "demo", lambda s: s["running"] == 1, "the call running")
    fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fut
    st = await status_until(c, "demo", lambda s: s["running"] == 0 and s["queued"] == 0,
                            "the server cancelled the call")
    assert st["completed"] == before["completed"] + 1 and st["stuck"] == 0


async def test_cancelling_in_process_mode_reaches_the_worker(pool, client):
    loop = asyncio.get_running_loop()
    before = await plugin_status(client, "demo")
    fut = loop.run_in_executor(pool, sleep_ms, 30000)
    await status_until(client, "demo", lambda s: s["running"] == 1, "the call running")
    fut.cancel()
    st = await status_until(client, "demo",
                            lambda s: s["running"] == 0 and s["completed"] == before["completed"] + 1,
                            "the cancelled call returned in its worker")
    assert st["restarts"] == before["restarts"]


def test_submit_returns_a_future_with_the_result_or_the_error(ferryd):
    with ferry.FerryExecutor(ferryd.socket) as pool:
        f = pool.submit(sleep_ms, 200)
        assert isinstance(f, concurrent.futures.Future)
        assert f.result(WAIT) == 200
        assert pool.submit(ferry.fn("demo.echo"), {"a": 1}).result(WAIT) == {"a": 1}
        err = pool.submit(ferry.fn("demo.fail"), "nope").exception(WAIT)
        assert isinstance(err, ferry.PluginError) and str(err) == "nope"


def test_a_running_call_stays_pending_and_cancel_reaches_the_server(ferryd_thread):
    with ferry.FerryExecutor(ferryd_thread.socket) as pool:
        f = pool.submit(sleep_ms, 30000)
        asyncio.run(_until_running(ferryd_thread.socket, 1))
        # Running on the server, yet PENDING here (not RUNNING, not done): still cancellable.
        assert not f.running() and not f.done()
        assert f.cancel()
        done, _ = concurrent.futures.wait([f], WAIT)
        assert done == {f} and f.cancelled()
        asyncio.run(_until_running(ferryd_thread.socket, 0))


async def _until_running(socket: str, n: int) -> None:
    async with ferry.connect(socket) as c:
        await status_until(c, "demo", lambda s: s["running"] == n and s["queued"] == 0,
                           f"{n} demo calls running")


def test_results_racing_cancels_never_break_the_executor(ferryd):
    problems = []
    with ferry.FerryExecutor(ferryd.socket) as pool:
        assert pool.submit(is_prime, 2).result(WAIT) is True
        pool._loop.set_exception_handler(lambda loop, ctx: problems.append(ctx))
        futures = [pool.submit(ferry.fn("demo.echo"), i) for i in range(500)]
        for f in futures[::2]:
            f.cancel()  # some before sending, some in flight, some already answered
        done, not_done = concurrent.futures.wait(futures, WAIT)
        assert not not_done
        for i, f in enumerate(futures):
            assert f.cancelled() or f.result() == i
        assert all(not f.cancelled() for f in futures[1::2])
        assert pool.submit(is_prime, 3).result(WAIT) is True
    assert problems == []


def test_a_shutdown_starting_during_submit_waits_for_its_hand_off(ferryd):
    # The hand-off to the loop happens under the lock shutdown() takes to stop
    # the loop: a shutdown begun in the middle of submit() cannot close the loop
    # before the call is on it (which failed with 'Event loop is closed').
    pool = ferry.FerryExecutor(ferryd.socket)
    assert pool.submit(is_prime, 2).result(WAIT) is True  # the loop is running
    stopper = threading.Thread(target=pool.shutdown)
    real = pool._loop.call_soon_threadsafe

    def hand_off(callback, *args):
        if callback == pool._start and not stopper.is_alive():
            stopper.start()
            stopper.join(0.5)  # a shutdown in the gap would finish here
        return real(callback, *args)

    pool._loop.call_soon_threadsafe = hand_off
    f = pool.submit(is_prime, 7)
    assert f.result(WAIT) is True
    stopper.join(WAIT)
    assert not stopper.is_alive() and not pool._thread.is_alive()


@pytest.mark.parametrize("cancel_futures", [False, True])
def test_every_future_ends_when_shutdown_races_submitting_threads(ferryd, cancel_futures):
    for _ in range(3):
        pool = ferry.FerryExecutor(ferryd.socket)
        futures: list[concurrent.futures.Future] = []
        refusals: list[Exception] = []
        started = threading.Barrier(9)
        threads = [threading.Thread(target=_submit_until_refused,
                                    args=(pool, futures, refusals, started)) for _ in range(8)]
        for t in threads:
            t.start()
        started.wait()
        while len(futures) < 200:
            time.sleep(0.001)
        pool.shutdown(wait=True, cancel_futures=cancel_futures)
        for t in threads:
            t.join(WAIT)
        assert len(refusals) == 8
        for e in refusals:
            assert isinstance(e, RuntimeError) and "after shutdown" in str(e), repr(e)
        done, not_done = concurrent.futures.wait(futures, 0)  # shutdown waited for them
        assert not not_done, f"{len(not_done)} of {len(futures)} futures left pending"
        for f in done:
            assert f.cancelled() or f.result() == "x"


def _submit_until_refused(pool, futures, refusals, started) -> None:
    started.wait()
    try:
        for _ in range(1_000_000):
            futures.append(pool.submit(ferry.fn("demo.echo"), "x"))
    except Exception as e:
        refusals.append(e)


async def test_shutdown_returns_when_the_server_stops_reading(tmp_path):
    async with FakeServer(str(tmp_path / "s.sock")) as fake:
        pool = ferry.FerryExecutor(fake.path)
        futures = [pool.submit(ferry.fn("x.y", raw=True), bytes(1000)) for _ in range(5000)]
        conn = await fake.accept()  # and never reads

        async def paused():
            client = pool._client  # the loop thread's objects, only read
            return client is not None and client._conn._paused

        await until(paused, "the executor's connection paused writing")
        await _shut_down(pool, cancel_futures=True)
        assert all(f.cancelled() for f in futures)
        conn.close()


async def test_shutdown_while_connecting_closes_the_socket(tmp_path):
    # The only call is cancelled while the server has not answered the HELLO:
    # the connect begun for it is abandoned, not left running past the loop.
    accepted: asyncio.Queue = asyncio.Queue()
    server = await asyncio.start_unix_server(lambda r, w: accepted.put_nowait((r, w)),
                                             str(tmp_path / "s.sock"))
    try:
        pool = ferry.FerryExecutor(tmp_path / "s.sock")
        f = pool.submit(is_prime, 7)
        reader, writer = await asyncio.wait_for(accepted.get(), WAIT)  # never answers
        await _shut_down(pool, cancel_futures=True)
        assert f.cancelled()
        # The client's HELLO, then end of file: the executor closed its socket.
        assert await asyncio.wait_for(reader.read(), WAIT) == ferry._wire.encode_hello()
        writer.close()
    finally:
        server.close()


async def _shut_down(pool: ferry.FerryExecutor, **kwargs) -> None:
    """pool.shutdown(**kwargs) on a thread of its own, so this loop keeps running;
    fails the test if it has not returned within WAIT."""
    stopper = threading.Thread(target=pool.shutdown, kwargs=kwargs, daemon=True)
    stopper.start()

    async def stopped():
        return not stopper.is_alive()

    await until(stopped, f"shutdown({kwargs}) returned")


def test_map_returns_results_in_order(ferryd):
    with ferry.FerryExecutor(ferryd.socket) as pool:
        assert list(pool.map(is_prime, PRIMES, timeout=WAIT)) == [True, True, True, True, False]
        assert list(pool.map(ferry.fn("demo.echo"), range(100))) == list(range(100))


def test_raw_handles_take_and_return_bytes(ferryd):
    with ferry.FerryExecutor(ferryd.socket) as pool:
        echo = ferry.fn("demo.echo_raw", raw=True)
        assert pool.submit(echo, bytes(range(256))).result(WAIT) == bytes(range(256))
        with pytest.raises(TypeError, match="exactly one"):
            pool.submit(echo, b"a", b"b").result(WAIT)


def test_shutdown_cancel_futures_cancels_calls_in_flight(ferryd_thread):
    pool = ferry.FerryExecutor(ferryd_thread.socket)
    futures = [pool.submit(sleep_ms, 30000) for _ in range(2)]
    asyncio.run(_until_running(ferryd_thread.socket, 2))
    pool.shutdown(wait=True, cancel_futures=True)
    assert all(f.cancelled() for f in futures)
    asyncio.run(_until_running(ferryd_thread.socket, 0))
    with pytest.raises(RuntimeError, match="shutdown"):
        pool.submit(is_prime, 7)


def test_shutdown_waits_for_calls_in_flight(ferryd):
    pool = ferry.FerryExecutor(ferryd.socket)
    f = pool.submit(sleep_ms, 300)
    pool.shutdown(wait=True)
    assert f.done() and f.result() == 300
    pool.shutdown()  # twice is harmless


def test_with_statement_shuts_down(ferryd):
    with ferry.FerryExecutor(ferryd.socket) as pool:
        f = pool.submit(is_prime, 97)
    assert f.result(0) is True
    with pytest.raises(RuntimeError):
        pool.submit(is_prime, 7)
    assert not pool._thread.is_alive()


def test_submit_refuses_what_is_not_a_ferry_function(ferryd):
    with ferry.FerryExecutor(ferryd.socket) as pool:
        with pytest.raises(TypeError, match=r"ferry\.fn"):
            pool.submit(print, 1)
        with pytest.raises(TypeError, match=r"ferry\.fn"):
            pool.submit("primes.is_prime", 1)
        with pytest.raises(TypeError, match="keyword"):
            pool.submit(is_prime, n=7)


def test_fn_handles_validate_and_compare():
    assert callable(is_prime)
    assert ferry.fn("primes.is_prime") == is_prime and hash(ferry.fn("primes.is_prime")) == hash(is_prime)
    assert ferry.fn("a.b", timeout=1) != ferry.fn("a.b")
    assert repr(ferry.fn("a.b", raw=True)) == "ferry.fn('a.b', raw=True)"
    for bad in ({"name": ""}, {"name": "a\nb"}, {"name": "a.b", "priority": "urgent"},
                {"name": "a.b", "timeout": -1}):
        with pytest.raises(ValueError):
            ferry.fn(**bad)


def test_calling_a_handle_directly_blocks_on_the_default_socket(ferryd, monkeypatch):
    monkeypatch.setenv("FERRY_SOCKET", ferryd.socket)
    monkeypatch.setattr(ferry.executor, "_default", None)
    try:
        assert is_prime(112272535095293) is True
        assert threading.current_thread() is threading.main_thread()
    finally:
        ferry.executor._default.shutdown()


async def test_calling_a_handle_directly_inside_a_loop_is_refused():
    with pytest.raises(RuntimeError, match="run_in_executor"):
        is_prime(7)


def test_a_lost_connection_fails_calls_in_flight_without_hanging(make_ferryd):
    d = make_ferryd()
    with ferry.FerryExecutor(d.socket) as pool:
        f = pool.submit(sleep_ms, 30000)
        asyncio.run(_until_running(d.socket, 1))
        d.stop(signal.SIGKILL)
        assert isinstance(f.exception(WAIT), ferry.ConnectionLost)
        # No server any more: a new call fails at once (connect error), no retry.
        err = pool.submit(is_prime, 7).exception(WAIT)
        assert isinstance(err, OSError) and not isinstance(err, ferry.Error), err
