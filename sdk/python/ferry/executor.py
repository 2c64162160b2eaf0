"""ferry.FerryExecutor: Ferry calls behind the concurrent.futures.Executor interface.

    with ferry.FerryExecutor() as pool:
        ok = await loop.run_in_executor(pool, ferry.fn("primes.is_prime"), 7)

The executor runs its own event loop on a background thread, holding one
ferry connection. submit() only schedules the call there, so it never blocks,
and any number of calls are in flight at once on that one connection.

The returned concurrent.futures.Future stays PENDING (not RUNNING) while the
call is in flight, so it can still be cancelled: cancel() sends CANCEL to the
server. That is what makes cancelling the asyncio future of run_in_executor()
cancel the call on the server: asyncio.wrap_future forwards the cancellation
from a callback, so the CANCEL is sent once your event loop runs again (at
your next await), not inside asyncio's fut.cancel().

A lost connection fails the calls in flight with ferry.ConnectionLost; they are
never retried (whether they ran is unknown). New submissions after that open a
new connection.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import functools
import os
import threading
from typing import Any

from . import _wire
from .client import Client, _open, default_path


class fn:
    """A handle on one Ferry function, to pass to FerryExecutor.submit() or
    loop.run_in_executor(). Immutable; safe to share between threads.

    fn("primes.is_prime") sends its positional arguments as a JSON array and
    returns the decoded result; fn(name, raw=True) takes exactly one bytes
    argument and returns bytes (call_raw). timeout and priority are as in
    Client.call().

    With loop.run_in_executor(pool, handle, ...), cancelling the asyncio future
    cancels the call on the server; the CANCEL goes out once the event loop runs
    again (asyncio forwards the cancellation from a callback).

    Calling the handle directly, e.g. fn("primes.is_prime")(7), makes a
    blocking call through a process-wide FerryExecutor on $FERRY_SOCKET. It
    raises RuntimeError on a thread that runs an event loop, since it would
    block that loop: use `await loop.run_in_executor(pool, handle, ...)` there.
    """

    __slots__ = ("name", "timeout", "priority", "raw")

    def __init__(self, name: str, *, timeout: float | None = None, priority: str = "normal",
                 raw: bool = False) -> None:
        _wire.check_name(name)  # ValueError now rather than BadRequest at every call
        _wire.priority_byte(priority)
        _wire.timeout_ms(timeout)
        self.name, self.timeout, self.priority, self.raw = name, timeout, priority, raw

    def __call__(self, *args: Any) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return _default_executor().submit(self, *args).result()
        raise RuntimeError(f"calling {self!r} directly would block this thread's event loop; "
                           "use `await loop.run_in_executor(executor, handle, *args)`")

    async def run(self, client: Client, args: tuple) -> Any:
        """Makes the call on client (an open ferry.Client)."""
        if not self.raw:
            return await client.call(self.name, *args, timeout=self.timeout,
                                     priority=self.priority)
        if len(args) != 1:
            raise TypeError(f"raw function {self.name} takes exactly one bytes argument, "
                            f"got {len(args)}")
        return await client.call_raw(self.name, args[0], self.timeout, self.priority)

    def _key(self) -> tuple:
        return (self.name, self.timeout, self.priority, self.raw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, fn) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v, default in (
            ("timeout", self.timeout, None), ("priority", self.priority, "normal"),
            ("raw", self.raw, False)) if v != default)
        return f"ferry.fn({self.name!r}{opts})"


class FerryExecutor(concurrent.futures.Executor):
    """A concurrent.futures.Executor whose work items are Ferry calls (ferry.fn handles).

    Thread-safe: submit(), map() and shutdown() may be called from any thread
    (shutdown(wait=True) not from a done-callback of its own futures).

    The connection is opened at the first call. Once it is lost, the calls in
    flight fail with ferry.ConnectionLost and are never retried, while new
    submissions reconnect (and get the connect error, e.g. an OSError, if the
    server is still gone). Cancelling a run_in_executor() future sends CANCEL
    once the caller's event loop runs again (see the module doc).
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self._path = os.fspath(path) if path is not None else default_path()
        self._lock = threading.Lock()
        self._shutdown = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._inflight: set[concurrent.futures.Future] = set()  # under _lock
        # Loop thread only:
        self._client: Client | None = None
        self._connecting: asyncio.Future | None = None
        self._tasks: set[asyncio.Task] = set()

    def submit(self, fn_handle: fn, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        """Starts fn_handle(*args) on the server; the future holds its result or ferry.Error.

        Cancelling the future while the call is in flight cancels it on the server.
        """
        if not isinstance(fn_handle, fn):
            raise TypeError(f"FerryExecutor runs Ferry functions only: pass "
                            f"ferry.fn('plugin.function'), not {fn_handle!r}")
        if kwargs:
            raise TypeError("Ferry functions take positional arguments only (sent as a JSON "
                            f"array); got keyword arguments {sorted(kwargs)}")
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            # Handed to the loop under _lock: shutdown() schedules _stop under it
            # too, so _start always runs first and the loop is still open for it.
            self._ensure_loop().call_soon_threadsafe(self._start, future, fn_handle, args)
            self._inflight.add(future)
        future.add_done_callback(self._forget)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new calls; cancel_futures=True also cancels (on the server) every call in
        flight. The connection closes once the remaining calls are answered; wait=True
        returns only then."""
        with self._lock:
            self._shutdown = True
            futures = list(self._inflight)
        if cancel_futures:
            for future in futures:  # not under _lock: their done-callbacks take it
                future.cancel()
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None:
                return
            try:
                loop.call_soon_threadsafe(self._stop_when_idle)
            except RuntimeError:
                pass  # the loop is already closed: an earlier shutdown finished
        if wait and thread is not threading.current_thread():
            thread.join()

    # --- the background loop ---------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:  # under _lock
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._run_loop, name="ferry-executor",
                                            daemon=True)
            self._thread.start()
        return self._loop

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def _forget(self, future: concurrent.futures.Future) -> None:
        with self._lock:
            self._inflight.discard(future)

    def _start(self, future: concurrent.futures.Future, handle: fn, args: tuple) -> None:
        if future.cancelled():  # cancelled before it was sent
            future.set_running_or_notify_cancel()
            return
        task = self._loop.create_task(self._call(handle, args))
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._settle, future))
        future.add_done_callback(functools.partial(self._on_future_done, task))

    def _on_future_done(self, task: asyncio.Task, future: concurrent.futures.Future) -> None:
        # Any thread. Only a cancel() lands here before the task is done.
        if future.cancelled() and not task.done():
            try:
                self._loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:
                pass  # the loop closed in between: the task finished meanwhile

    def _settle(self, future: concurrent.futures.Future, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            future.cancel()  # False if already cancelled; either way no result to give
            future.set_running_or_notify_cancel()  # lets concurrent.futures.wait() see it done
            return
        # Atomic with cancel(): either the future was cancelled (drop the
        # result) or from now on it cannot be, and the result is ours to set.
        if not future.set_running_or_notify_cancel():
            return
        exc = task.exception()
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(task.result())

    async def _call(self, handle: fn, args: tuple) -> Any:
        return await handle.run(await self._connected(), args)

    async def _connected(self) -> Client:
        client = self._client
        if client is not None and not client.closed:
            return client
        if self._connecting is None or self._connecting.done():
            self._connecting = self._loop.create_task(self._connect())
        # shield: one caller being cancelled must not abort the others' connect.
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> Client:
        self._client = await _open(self._path)
        return self._client

    def _stop_when_idle(self) -> None:
        self._loop.create_task(self._stop())

    async def _stop(self) -> None:
        # call_soon_threadsafe is FIFO, so every submit() made before shutdown()
        # has its task by now.
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        if self._connecting is not None and not self._connecting.done():
            # Begun for calls that were cancelled since: nobody awaits it now,
            # and it must not outlive the loop (its socket would stay open).
            self._connecting.cancel()
            await asyncio.wait([self._connecting])
        if self._client is not None:
            await self._client.aclose()
        self._loop.stop()


_default: FerryExecutor | None = None
_default_lock = threading.Lock()


def _default_executor() -> FerryExecutor:
    """The process-wide executor behind direct calls of ferry.fn handles."""
    global _default
    with _default_lock:
        if _default is None:
            _default = FerryExecutor()
            atexit.register(_default.shutdown, wait=False, cancel_futures=True)
        return _default
