"""The asyncio client: one Unix-socket connection carrying any number of concurrent calls.

    async with ferry.connect() as client:
        print(await client.call("primes.is_prime", 7))
        stream = client.stream("demo.count", 3, 100)   # partial results (protocol 1.2)
        async for part in stream:
            print(part)                                # 1, 2, 3 as they come
        print(stream.result)                           # 3

ferry.connect() opens a Client; the connection's machinery (write batching,
flow control, cancellation, dispatch of replies) is in _connection.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import weakref
from typing import Any

from . import _wire
from ._connection import Connection, StreamCall
from .errors import UnsupportedVersion

DEFAULT_SOCKET = "/tmp/ferry.sock"
_JSON = json.JSONEncoder(separators=(",", ":"))  # compact, and reused (json.dumps(separators=) is not)


def default_path() -> str:
    """$FERRY_SOCKET if set, else /tmp/ferry.sock."""
    return os.environ.get("FERRY_SOCKET") or DEFAULT_SOCKET


class Client:
    """A connection to ferryd that carries any number of concurrent calls; made by ferry.connect().

    Not thread-safe: use it from the event loop that opened it (from threads or
    another loop, use ferry.FerryExecutor). Never reconnects or retries: once
    the connection is lost, every call raises ferry.ConnectionLost.
    """

    def __init__(self, conn: Connection, path: str) -> None:
        self._conn = conn
        self.path = path

    async def call(self, fn: str, *args: Any, timeout: float | None = None,
                   priority: str = "normal") -> Any:
        """Calls a typed function with args (sent as a JSON array); returns its decoded JSON result.

        timeout: seconds, the server's deadline for the call (rounded up to whole
        ms); None or 0 means the plugin's timeout_ms, which also caps it. Past
        it the server answers and this raises ferry.Timeout.
        priority: "normal", "high" or "low" (order within the plugin's queue).
        Raises the ferry.Error subclass of the server's error code, BadRequest
        locally for a bad name or an oversized request (nothing is sent), and
        ConnectionLost if the connection ends first, TypeError for arguments
        json cannot encode, ValueError for a reply that is not JSON (a raw
        function: use call_raw). Cancelling the awaiting task cancels the call
        on the server: the task raises CancelledError as usual.
        """
        payload = _JSON.encode(list(args)).encode()
        return json.loads(await self._conn.request(fn, payload, timeout, priority))

    async def call_raw(self, fn: str, payload: bytes, timeout: float | None = None,
                       priority: str = "normal") -> bytes:
        """Calls a raw function: payload is sent as is and the reply's bytes are returned as is."""
        if not isinstance(payload, bytes):
            if isinstance(payload, str):
                raise TypeError("call_raw payload must be bytes, not str (encode it first)")
            payload = bytes(payload)
        return await self._conn.request(fn, payload, timeout, priority)

    def stream(self, fn: str, *args: Any, timeout: float | None = None,
               priority: str = "normal") -> Stream:
        """A streamed call of a typed function: `async for part in client.stream(fn, *args)`
        yields its partial results (decoded JSON) as the function emits them; once the
        loop ends, the Stream's .result holds its result. See ferry.Stream.

        Needs a server that speaks protocol 1.2: raises ferry.UnsupportedVersion at
        once otherwise (nothing is sent). timeout and priority as for call().
        """
        payload = _JSON.encode(list(args)).encode()
        return Stream(self._conn, fn, payload, timeout, priority, json.loads)

    def stream_raw(self, fn: str, payload: bytes, timeout: float | None = None,
                   priority: str = "normal") -> Stream:
        """As stream(), for a raw function: partials and the result are bytes, as sent."""
        return Stream(self._conn, fn, bytes(payload), timeout, priority, bytes)

    async def ping(self, body: bytes = b"") -> bytes:
        """PING: returns the PONG's body (the same bytes). The server answers from its
        event loop, so this measures its responsiveness."""
        return await self._conn.ping(bytes(body))

    def close(self) -> None:
        """Closes the connection; calls still in flight raise ConnectionLost and the
        server cancels them."""
        self._conn.close("connection closed by the client")

    async def wait_closed(self) -> None:
        """Returns once the socket is closed (after close(), or when the server left)."""
        await asyncio.shield(self._conn.closed)

    async def aclose(self) -> None:
        self.close()
        await self.wait_closed()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        """True once no more calls can be made (closed by either side, or failed)."""
        return self._conn._lost is not None

    @property
    def max_frame_bytes(self) -> int:
        """The largest frame body the server accepts (from its HELLO)."""
        return self._conn.max_frame_bytes

    @property
    def server_version(self) -> tuple[int, int]:
        """(major, minor) of the protocol the server speaks."""
        return (_wire.VERSION_MAJOR, self._conn.server_minor)

    @property
    def in_flight(self) -> int:
        """Calls sent and not yet answered, cancelled ones awaiting their reply included."""
        return self._conn.in_flight

    @property
    def write_buffer_size(self) -> int:
        """Bytes waiting to be sent; bounded by flow control."""
        return self._conn.write_buffer_size

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.in_flight} in flight"
        return f"<ferry.Client {self.path!r} {state}>"


class Stream:
    """One streamed call (protocol 1.2), made by Client.stream() or stream_raw().

        stream = client.stream("demo.count", 5, 100)
        async for part in stream:      # each partial result, in the order emitted
            print(part)
        print(stream.result)           # the call's result, once the loop has ended

    The CALL is sent when iteration starts. An error reply is raised from the loop
    (after the partials that came before it), as call() would raise it.
    Cancelling the task that iterates cancels the call on the server (CANCEL),
    and so does cancel(), leaving `async with` early, or dropping an unfinished
    Stream. Partials wait in the client until iterated; past 4 MiB of them
    (over all streams of the connection) the client stops reading its socket,
    so the server slows the functions down, and the connection's other
    replies wait too. Event-loop only, one consumer.
    """

    def __init__(self, conn: Connection, fn: str, payload: bytes, timeout: float | None,
                 priority: str, decode: Any) -> None:
        if conn.server_minor < 2:
            raise UnsupportedVersion(f"the server speaks protocol 1.{conn.server_minor}, which has "
                                     "no partial results (streaming needs 1.2)")
        self._call = StreamCall(conn, decode)
        self._request = (fn, payload, timeout, priority)
        self._result: Any = None
        self._error: BaseException | None = None
        self._ended = False
        # An unfinished Stream that is dropped cancels its call (the connection
        # holds only the StreamCall, never this object).
        weakref.finalize(self, StreamCall.cancel, self._call).atexit = False

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> Any:
        call = self._call
        if call.reply is None and not call.over:
            await call.conn.start_stream(call, *self._request)
        while not call.over:
            if call.parts:
                return call.decode(call.take())
            if call.reply.done():
                return self._end()
            try:
                await call.wait()
            except asyncio.CancelledError:
                call.cancel()
                raise
        raise StopAsyncIteration

    def _end(self) -> Any:
        """The reply, after the last partial: StopAsyncIteration with .result set, or its error."""
        call = self._call
        call.over = self._ended = True
        try:
            self._result = call.decode(call.reply.result())
        except BaseException as e:  # the server's error, ConnectionLost, or a reply that is not JSON
            self._error = e
            raise
        raise StopAsyncIteration

    @property
    def result(self) -> Any:
        """The call's result once iteration has ended; its error if it failed."""
        if self._error is not None:
            raise self._error
        if not self._ended:
            raise asyncio.InvalidStateError("the stream has not ended: iterate it to the end first"
                                            if not self._call.over else "the stream was cancelled")
        return self._result

    @property
    def call_id(self) -> int:
        """The call's id on the connection (0 until iteration starts)."""
        return self._call.call_id

    def cancel(self) -> None:
        """Gives up on the call: the server is sent CANCEL, partials not yet read are dropped."""
        self._call.cancel()

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.cancel()  # a no-op once the stream has ended


async def _open(path: str | os.PathLike | None = None, *, major: int = _wire.VERSION_MAJOR,
                minor: int = _wire.VERSION_MINOR) -> Client:
    """Connects and does the HELLO handshake. major/minor exist for tests of the
    server's version check."""
    loop = asyncio.get_running_loop()
    path = os.fspath(path) if path is not None else default_path()
    transport, conn = await loop.create_unix_connection(lambda: Connection(loop), path)
    try:
        conn.send_hello(major, minor)
        await conn.hello
    except BaseException:
        transport.close()
        raise
    return Client(conn, path)


class _Connector:
    """What ferry.connect() returns: await it, or use it as `async with`."""

    __slots__ = ("_path", "_client")

    def __init__(self, path: str | os.PathLike | None) -> None:
        self._path = path
        self._client: Client | None = None

    def __await__(self):
        return _open(self._path).__await__()

    async def __aenter__(self) -> Client:
        self._client = await _open(self._path)
        return self._client

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.aclose()


def connect(path: str | os.PathLike | None = None) -> _Connector:
    """Opens a connection to ferryd: `client = await ferry.connect()` or
    `async with ferry.connect() as client:`.

    path: the server's Unix socket; default $FERRY_SOCKET, else /tmp/ferry.sock.
    Raises OSError if the socket cannot be reached, and the ferry.Error of the
    server's reply if it refuses the handshake (e.g. UnsupportedVersion).
    """
    return _Connector(path)
