"""A scripted ferryd stand-in on the test's own event loop, for what a real server
cannot be made to do on cue (stop reading, hold a reply, speak protocol 1.0)."""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from ferry import _wire

WAIT = 20.0


class Frame(NamedTuple):
    type: int
    call_id: int
    body: bytes


class FakeConn:
    """The server side of one connection, after the HELLO exchange. Test-loop only."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    async def frame(self, timeout: float = WAIT) -> Frame:
        header = _wire.parse_header(await asyncio.wait_for(self.reader.readexactly(16), timeout))
        body = await asyncio.wait_for(self.reader.readexactly(header.length), timeout)
        return Frame(header.type, header.call_id, body)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def close(self) -> None:
        self.writer.close()


def call_payload(body: bytes) -> bytes:
    """The payload of a CALL body."""
    return body[8 + int.from_bytes(body[6:8], "little"):]


class FakeServer:
    """Listens on path; answers each client's HELLO with (1, minor, max_frame_bytes)
    and hands the connection to accept(). Test-loop only."""

    def __init__(self, path: str, minor: int = 1, max_frame_bytes: int = 1 << 20):
        self.path, self.minor, self.max_frame_bytes = path, minor, max_frame_bytes
        self._conns: asyncio.Queue[FakeConn] = asyncio.Queue()
        self.hellos: list[bytes] = []  # each client's HELLO frame
        self._server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> FakeServer:
        self._server = await asyncio.start_unix_server(self._hello, self.path)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()

    async def _hello(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = FakeConn(reader, writer)
        self.hellos.append(await reader.readexactly(24))  # header + 8-byte body, as sent
        writer.write(_wire.encode_hello(1, self.minor, self.max_frame_bytes))
        await self._conns.put(conn)

    async def accept(self) -> FakeConn:
        return await asyncio.wait_for(self._conns.get(), WAIT)
