"""Ferry wire protocol v1.2: pure encoders and decoders (spec: docs/protocol.md).

No I/O and no shared state: every function here is thread-safe, and
FrameReader instances are independent (one per connection, not thread-safe).
The client uses exactly these functions, so the tests that check them against
the protocol document's bytes check what goes on the wire.
"""

from __future__ import annotations

import math
import struct
from typing import NamedTuple

HEADER_SIZE = 16
HELLO, CALL, RESULT, ERROR, PING, PONG, CANCEL, PARTIAL = range(1, 9)
VERSION_MAJOR, VERSION_MINOR = 1, 2
MAX_NAME_LENGTH = 255
CALL_FIXED_SIZE = 8  # u32 timeout_ms | u8 priority | u8 flags | u16 name_len
CALL_PARTIALS = 1  # CALL flags bit 0 (since 1.2): send me PARTIAL frames
MAX_TIMEOUT_MS = 0xFFFFFFFF
PRIORITIES = {"normal": 0, "high": 1, "low": 2}

_HEADER = struct.Struct("<IBBHQ")  # body_length, type, flags, reserved, call_id
_HELLO_BODY = struct.Struct("<HHI")  # major, minor, max_frame_bytes
# A CALL's header and fixed body part packed in one go (the client's hot path).
_CALL_START = struct.Struct("<IBBHQIBBH")
_ERROR_CODE = struct.Struct("<H")
_CANCEL_START = struct.Struct("<IBBHQ")


class ProtocolError(ValueError):
    """The peer sent bytes that are not a valid frame (the connection is unusable)."""


class Header(NamedTuple):
    length: int
    type: int
    flags: int
    reserved: int
    call_id: int


class Hello(NamedTuple):
    major: int
    minor: int
    max_frame_bytes: int


# What FrameReader yields: (type, call_id, body). A plain tuple, not a NamedTuple:
# making one per reply is measurably cheaper on the client's hot path.
Frame = tuple[int, int, bytes]


def encode_frame(type_: int, call_id: int, body: bytes = b"") -> bytes:
    """Any frame: the 16-byte header followed by body."""
    return _HEADER.pack(len(body), type_, 0, 0, call_id) + body


def encode_hello(major: int = VERSION_MAJOR, minor: int = VERSION_MINOR,
                 max_frame_bytes: int = 0) -> bytes:
    """HELLO with call_id 0; a client announces max_frame_bytes 0."""
    return encode_frame(HELLO, 0, _HELLO_BODY.pack(major, minor, max_frame_bytes))


def encode_call(call_id: int, name: bytes, payload: bytes, timeout_ms: int = 0,
                priority: int = 0, flags: int = 0) -> bytes:
    """CALL frame. name must already be checked (check_name); payload is sent as is.
    flags: CALL_PARTIALS to ask for partial results (server minor >= 2 only)."""
    body_length = CALL_FIXED_SIZE + len(name) + len(payload)
    return _CALL_START.pack(body_length, CALL, 0, 0, call_id, timeout_ms, priority, flags,
                            len(name)) + name + payload


def encode_ping(call_id: int, body: bytes = b"") -> bytes:
    return encode_frame(PING, call_id, body)


def encode_cancel(call_id: int) -> bytes:
    return _CANCEL_START.pack(0, CANCEL, 0, 0, call_id)


def encode_result(call_id: int, payload: bytes) -> bytes:
    """Server side; here for tests and fake servers."""
    return encode_frame(RESULT, call_id, payload)


def encode_partial(call_id: int, data: bytes) -> bytes:
    """Server side (1.2): one partial result of call_id; here for tests and fake servers."""
    return encode_frame(PARTIAL, call_id, data)


def encode_error(call_id: int, code: int, message: str | bytes) -> bytes:
    """Server side; here for tests and fake servers."""
    if isinstance(message, str):
        message = message.encode("utf-8")
    return encode_frame(ERROR, call_id, _ERROR_CODE.pack(code) + message)


def check_name(name: str) -> bytes:
    """The UTF-8 bytes of a function name, or ValueError saying why the server would refuse it.

    The server closes the whole connection over a malformed name, so it is
    refused here before anything is sent.
    """
    if not isinstance(name, str):
        raise TypeError(f"function name must be str, not {type(name).__name__}")
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"function name {name!r} is not valid UTF-8 (lone surrogate)") from None
    if not 1 <= len(raw) <= MAX_NAME_LENGTH:
        raise ValueError(f"function name must be 1..{MAX_NAME_LENGTH} bytes of UTF-8, "
                         f"got {len(raw)}")
    if any(b < 0x20 or b == 0x7F for b in raw):
        raise ValueError(f"function name {name!r} contains a control character")
    return raw


def priority_byte(priority: str) -> int:
    """The wire value of "normal", "high" or "low"; ValueError for anything else."""
    try:
        return PRIORITIES[priority]
    except (KeyError, TypeError):
        raise ValueError(f"priority must be 'normal', 'high' or 'low', not {priority!r}") from None


def timeout_ms(seconds: float | None) -> int:
    """A CALL's timeout_ms for a timeout in seconds: rounded up, at least 1 ms.

    None and 0 give 0, which the server reads as "the plugin's default".
    """
    if seconds is None or seconds == 0:
        return 0
    if not seconds > 0:  # also refuses NaN
        raise ValueError(f"timeout must be None or > 0 seconds, not {seconds!r}")
    if math.isinf(seconds):
        return MAX_TIMEOUT_MS
    # round() first: 0.3 * 1000 is 300.00000000000006, which must stay 300.
    return min(MAX_TIMEOUT_MS, max(1, math.ceil(round(seconds * 1000, 6))))


def call_body_size(name: bytes, payload_size: int) -> int:
    """body_length of a CALL frame; must not exceed the server's max_frame_bytes."""
    return CALL_FIXED_SIZE + len(name) + payload_size


def parse_header(buf: bytes, offset: int = 0) -> Header:
    """The header at buf[offset:offset+16]; ProtocolError if it is malformed (§2)."""
    header = Header(*_HEADER.unpack_from(buf, offset))
    if not HELLO <= header.type <= PARTIAL or header.flags or header.reserved:
        raise ProtocolError(f"malformed frame header: {bytes(buf[offset:offset + 16]).hex(' ')}")
    return header


def decode_hello(body: bytes) -> Hello:
    """HELLO body; bytes after the first 8 are ignored (room for later minors)."""
    if len(body) < _HELLO_BODY.size:
        raise ProtocolError(f"HELLO body of {len(body)} bytes, need 8")
    return Hello(*_HELLO_BODY.unpack_from(body))


def decode_error(body: bytes) -> tuple[int, str]:
    """(code, message) of an ERROR body; invalid UTF-8 in the message is replaced."""
    if len(body) < 2:
        raise ProtocolError(f"ERROR body of {len(body)} bytes, need 2")
    (code,) = _ERROR_CODE.unpack_from(body)
    if code == 0:
        raise ProtocolError("ERROR with code 0")
    return code, bytes(body[2:]).decode("utf-8", errors="replace")


class FrameReader:
    """Splits a byte stream into frames, whatever the chunking of the reads.

    One per connection; not thread-safe. feed() returns every complete frame
    in what it has been given so far and keeps a partial frame's bytes.
    """

    __slots__ = ("_partial", "_need")

    def __init__(self) -> None:
        self._partial = bytearray()
        self._need = 0  # bytes _partial must hold before parsing is worth trying

    def feed(self, data: bytes) -> list[Frame]:
        if type(data) is not bytes:
            data = bytes(data)  # bodies come out as bytes whatever came in
        if self._partial:
            self._partial += data
            if len(self._partial) < self._need:
                return []  # a large frame still arriving: no re-parse per chunk
            data = bytes(self._partial)
            self._partial = bytearray()
        frames, pos = self._split(data)
        if pos < len(data):
            self._keep(data, pos)
        return frames

    def _split(self, data: bytes) -> tuple[list[Frame], int]:
        frames = []
        pos, end = 0, len(data)
        unpack = _HEADER.unpack_from
        while end - pos >= HEADER_SIZE:
            length, type_, flags, reserved, call_id = unpack(data, pos)
            if not HELLO <= type_ <= PARTIAL or flags or reserved:
                parse_header(data, pos)  # raises with the bytes in the message
            stop = pos + HEADER_SIZE + length
            if stop > end:
                break
            frames.append((type_, call_id, data[pos + HEADER_SIZE:stop]))
            pos = stop
        return frames, pos

    def _keep(self, data: bytes, pos: int) -> None:
        self._partial = bytearray(memoryview(data)[pos:])
        if len(self._partial) >= HEADER_SIZE:
            self._need = HEADER_SIZE + parse_header(self._partial).length
        else:
            self._need = HEADER_SIZE

    @property
    def buffered(self) -> int:
        """Bytes of a partial frame held for the next feed()."""
        return len(self._partial)
