"""One connection's machinery under ferry.Client: batching, flow control, replies by id.

Design (docs/protocol.md is the contract):
- An asyncio.Protocol, not streams: replies are parsed in data_received and
  resolve their futures directly, with no reader task in between.
- Frames written during one event-loop turn are joined and handed to the
  transport once (call_soon), so N concurrent calls cost about one send(),
  not N. Past 256 KiB the batch is flushed at once.
- Flow control: while the transport is above its high-water mark
  (pause_writing), new calls wait in line; resume_writing wakes them in order,
  about 256 KiB of frames per loop turn. So a server that stops reading makes
  callers wait instead of growing the buffer without bound. Replies are always
  read, so this cannot deadlock.
- Cancelling the task awaiting call() sends CANCEL (server minor >= 1). The
  call id stays reserved in the pending table until the server's one reply
  for it arrives (§3.6, §5), and that reply is then dropped.
- Streamed calls (server minor >= 2): PARTIAL frames go to the call's
  StreamCall, in order, before its reply resolves the usual future. Partials
  a slow consumer has not taken yet count against _HOLD_HIGH: past it the
  connection stops reading (the server then slows the function: §7), and
  reads again below _HOLD_LOW.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

from . import _wire
from .errors import BadRequest, ConnectionLost, Error, UnsupportedVersion, error_for

_FLUSH_BYTES = 256 * 1024  # a batch this big is written at once, not at the end of the turn
_NAME_CACHE_MAX = 4096  # validated function names kept (callers use few names)
_HOLD_HIGH = 4 << 20  # partials received and not yet consumed: stop reading past this
_HOLD_LOW = 1 << 20  # and read again below this


class Connection(asyncio.Protocol):
    """One connection's I/O: batching writes, flow control, dispatching replies by id.

    Lives on one event loop; not thread-safe.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._reader = _wire.FrameReader()
        self._pending: dict[int, asyncio.Future] = {}  # sent, not yet answered
        self._next_id = 0
        self._out = bytearray()  # frames of this loop turn, not yet handed to the transport
        self._flush_scheduled = False
        self._paused = False  # the transport is above its high-water mark
        self._waiters: collections.deque[tuple[asyncio.Future, int]] = collections.deque()
        self._lost: ConnectionLost | None = None  # set once: why no more calls can be made
        self._names: dict[str, bytes] = {}
        self._streams: dict[int, StreamCall] = {}  # streamed calls not yet answered
        self._held = 0  # bytes of partials received, not yet consumed
        self._reading_paused = False
        self.hello: asyncio.Future = loop.create_future()
        self.closed: asyncio.Future = loop.create_future()
        self.server_minor = 0
        self.max_frame_bytes = 0

    # --- asyncio.Protocol callbacks -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
            if not self.hello.done() and frames:
                frames = self._take_hello(frames)
            self._dispatch(frames)
        except _wire.ProtocolError as e:
            self._fail(f"the server broke the protocol: {e}")

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        why = "connection closed by the server" if exc is None else f"connection lost: {exc}"
        self._fail(why)
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_writers()

    # --- replies ----------------------------------------------------------------------

    def _take_hello(self, frames: list[_wire.Frame]) -> list[_wire.Frame]:
        type_, call_id, body = frames[0]
        if type_ == _wire.ERROR and call_id == 0:
            code, message = _wire.decode_error(body)
            self._fail(message, error_for(code, message))
            return []
        if type_ != _wire.HELLO or call_id != 0:
            raise _wire.ProtocolError(f"expected HELLO first, got frame type {type_}")
        hello = _wire.decode_hello(body)
        if hello.major != _wire.VERSION_MAJOR:
            message = (f"the server speaks protocol {hello.major}.{hello.minor}; "
                       f"this client speaks {_wire.VERSION_MAJOR}.{_wire.VERSION_MINOR}")
            self._fail(message, UnsupportedVersion(message))
            return []
        self.server_minor, self.max_frame_bytes = hello.minor, hello.max_frame_bytes
        self.hello.set_result(hello)
        return frames[1:]

    def _dispatch(self, frames: list[_wire.Frame]) -> None:
        pending = self._pending
        for type_, call_id, body in frames:
            if type_ == _wire.PARTIAL:
                stream = self._streams.get(call_id)
                if stream is not None:  # else: cancelled by its caller, dropped
                    stream.add_part(body)
                continue
            if self._streams and (type_ == _wire.RESULT or type_ == _wire.ERROR):
                self._streams.pop(call_id, None)
            if type_ == _wire.RESULT or type_ == _wire.PONG:
                fut = pending.pop(call_id, None)
                if fut is not None and not fut.done():  # done: cancelled by its caller
                    fut.set_result(body)
            elif type_ == _wire.ERROR and call_id != 0:
                fut = pending.pop(call_id, None)
                if fut is not None and not fut.done():
                    fut.set_exception(error_for(*_wire.decode_error(body)))
            elif type_ == _wire.ERROR:
                code, message = _wire.decode_error(body)
                self._fail(f"the server closed the connection: {message}", error_for(code, message))
                return
            else:
                raise _wire.ProtocolError(f"unexpected frame type {type_} from the server")

    def _fail(self, why: str, server_error: Error | None = None) -> None:
        """Ends the connection: every pending call and later ones get ConnectionLost."""
        if self._lost is None:
            self._lost = ConnectionLost(why, server_error=server_error)
        if not self.hello.done():
            self.hello.set_exception(server_error or self._lost_error())
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(self._lost_error())
        self._wake_writers()  # callers waiting to write: they see _lost
        if self._transport is not None:
            # abort(), not close(): close() waits for the write buffer to drain,
            # forever if the server stopped reading, and nobody awaits what is
            # still buffered (every call has just failed).
            self._transport.abort()

    def _lost_error(self) -> ConnectionLost:
        """A fresh exception per caller, so tracebacks do not pile up on one object."""
        lost = self._lost
        err = ConnectionLost(lost.message, server_error=lost.server_error)
        err.__cause__ = lost.server_error
        return err

    # --- requests ---------------------------------------------------------------------

    async def request(self, name: str, payload: bytes, timeout: float | None,
                      priority: str) -> bytes:
        """Sends one CALL and returns its RESULT body; raises the ERROR's exception."""
        name_bytes = self._names.get(name) or self._check_name(name)
        prio = _wire.priority_byte(priority)
        timeout_ms = _wire.timeout_ms(timeout)
        body_length = _wire.call_body_size(name_bytes, len(payload))
        call_id, fut = await self._send(body_length, _wire.encode_call, name_bytes, payload,
                                        timeout_ms, prio)
        try:
            return await fut
        except asyncio.CancelledError:
            self._cancel(call_id)
            raise

    async def start_stream(self, stream: StreamCall, name: str, payload: bytes,
                           timeout: float | None, priority: str) -> None:
        """Sends stream's CALL asking for partial results; they and the reply go to stream."""
        if self.server_minor < 2:
            raise UnsupportedVersion(f"the server speaks protocol 1.{self.server_minor}, which has "
                                     "no partial results (streaming needs 1.2)")
        name_bytes = self._names.get(name) or self._check_name(name)
        prio = _wire.priority_byte(priority)
        timeout_ms = _wire.timeout_ms(timeout)
        body_length = _wire.call_body_size(name_bytes, len(payload))
        call_id, fut = await self._send(body_length, _wire.encode_call, name_bytes, payload,
                                        timeout_ms, prio, _wire.CALL_PARTIALS)
        stream.started(call_id, fut)
        self._streams[call_id] = stream  # before any reply can be read: no await since the write

    def cancel_stream(self, stream: StreamCall) -> None:
        """The caller gave up: later partials are dropped, CANCEL is sent (if unanswered)."""
        self._streams.pop(stream.call_id, None)
        self._cancel(stream.call_id)

    def hold(self, size: int) -> None:
        """A partial waits for its consumer: past _HOLD_HIGH, stop reading the socket."""
        self._held += size
        if self._held > _HOLD_HIGH and not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    def release(self, size: int) -> None:
        self._held -= size
        if self._reading_paused and self._held <= _HOLD_LOW and self._transport is not None:
            self._reading_paused = False
            if not self._transport.is_closing():
                self._transport.resume_reading()

    async def ping(self, body: bytes) -> bytes:
        _, fut = await self._send(len(body), _wire.encode_ping, body)
        return await fut  # a cancelled ping's PONG is dropped like a late reply

    async def _send(self, body_length: int, encode: Callable[..., bytes],
                    *fields: object) -> tuple[int, asyncio.Future]:
        """Writes the frame encode(call_id, *fields) once flow control lets it; returns
        its call id and the future its reply resolves.

        CALL and PING take ids from one counter, so every reply names one request.
        """
        if body_length > self.max_frame_bytes:
            self._too_large(body_length)
        if self._paused or self._waiters or self._lost is not None:
            await self._wait_writable(body_length)
        call_id = self._next_id = self._next_id + 1
        fut = self._loop.create_future()
        self._pending[call_id] = fut
        self._write(encode(call_id, *fields))
        return call_id, fut

    async def _wait_writable(self, size: int) -> None:
        """Flow control: waits in line while the transport is above its high-water mark.

        Waiters are woken in order, a batch of about _FLUSH_BYTES at a time, so
        the buffer stays bounded and 100,000 waiting callers are woken once each
        (an asyncio.Event would wake them all at every resume).
        """
        if self._lost is None:
            fut = self._loop.create_future()
            self._waiters.append((fut, size))
            await fut
        if self._lost is not None:
            raise self._lost_error()

    def _wake_writers(self) -> None:
        waiters = self._waiters
        budget = float("inf") if self._lost is not None else _FLUSH_BYTES
        while waiters and budget > 0 and (not self._paused or self._lost is not None):
            fut, size = waiters.popleft()
            if not fut.done():  # done: its caller was cancelled while waiting
                fut.set_result(None)
                budget -= size + _wire.HEADER_SIZE
        if waiters and not self._paused:
            self._schedule_flush()  # the next batch goes after this one is written

    def _cancel(self, call_id: int) -> None:
        # Still pending = not answered yet. Its entry (a cancelled future) stays
        # until the server's one reply arrives, which keeps the id reserved.
        if call_id in self._pending and self._lost is None and self.server_minor >= 1:
            self._write(_wire.encode_cancel(call_id))

    def _check_name(self, name: str) -> bytes:
        try:
            raw = _wire.check_name(name)
        except ValueError as e:
            raise BadRequest(f"{e} (refused locally, not sent)") from None
        if len(self._names) < _NAME_CACHE_MAX:
            self._names[name] = raw
        return raw

    def _too_large(self, body_length: int) -> None:
        raise BadRequest(f"frame body of {body_length} bytes exceeds the server's "
                         f"max_frame_bytes ({self.max_frame_bytes}); not sent")

    def _write(self, frame: bytes) -> None:
        out = self._out
        out += frame
        if len(out) >= _FLUSH_BYTES:
            self._flush()
        else:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self._transport is not None and not self._transport.is_closing():
            # Hand the buffer over rather than copy it: the transport may keep a view of it.
            out, self._out = self._out, bytearray()
            self._transport.write(out)
        if self._waiters and not self._paused:
            self._wake_writers()

    def send_hello(self, major: int, minor: int) -> None:
        self._write(_wire.encode_hello(major, minor))

    def close(self, why: str) -> None:
        # CANCELs and calls already issued go out if the socket takes them; the
        # server cancels whatever the closed connection left running anyway.
        self._flush()
        self._fail(why)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    @property
    def write_buffer_size(self) -> int:
        """Bytes written by callers but not yet taken by the kernel."""
        transport_bytes = self._transport.get_write_buffer_size() if self._transport else 0
        return len(self._out) + transport_bytes


class StreamCall:
    """One streamed call's state, between the connection (which feeds it) and the
    ferry.Stream iterating it. Holds no reference to the Stream, so a Stream that
    is dropped unfinished can be collected (and its call cancelled). Event-loop only.
    """

    def __init__(self, conn: Connection, decode: Callable[[bytes], Any]) -> None:
        self.conn = conn
        self.decode = decode
        self.call_id = 0
        self.reply: asyncio.Future | None = None  # the final RESULT/ERROR
        self.parts: collections.deque[bytes] = collections.deque()
        self.wakeup: asyncio.Future | None = None  # the consumer waits on it
        self.over = False  # ended (reply consumed) or cancelled: nothing more to read

    def started(self, call_id: int, reply: asyncio.Future) -> None:
        self.call_id, self.reply = call_id, reply
        reply.add_done_callback(self._reply_done)

    def add_part(self, body: bytes) -> None:
        self.parts.append(body)
        self.conn.hold(len(body))
        self._wake()

    def _reply_done(self, reply: asyncio.Future) -> None:
        if not reply.cancelled():
            reply.exception()  # retrieved here: the consumer may never ask for it
        self._wake()

    def _wake(self) -> None:
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    async def wait(self) -> None:
        """Until a partial or the reply arrives."""
        self.wakeup = self.conn._loop.create_future()
        try:
            await self.wakeup
        finally:
            self.wakeup = None

    def take(self) -> bytes:
        body = self.parts.popleft()
        self.conn.release(len(body))
        return body

    def cancel(self) -> None:
        """Gives up on the call: CANCEL if it is unanswered, partials dropped."""
        if self.over:
            return
        self.over = True
        while self.parts:
            self.take()
        if self.reply is not None:
            self.reply.cancel()  # so its reply, when it comes, is dropped
            self.conn.cancel_stream(self)
