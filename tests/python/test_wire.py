"""The frame codec (ferry._wire) against docs/protocol.md's bytes, plus property tests."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings, strategies as st

from conftest import REPO
from ferry import _wire


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", "").replace("\n", ""))


# docs/protocol.md §9 and §3.6, byte for byte.
HELLO_CLIENT = hexbytes("08 00 00 00  01  00  00 00  00 00 00 00 00 00 00 00"
                        "01 00  02 00  00 00 00 00")
HELLO_SERVER = hexbytes("08 00 00 00  01  00  00 00  00 00 00 00 00 00 00 00"
                        "01 00  02 00  00 00 00 01")
CALL_IS_PRIME_7 = hexbytes("1a 00 00 00  02  00  00 00  01 00 00 00 00 00 00 00"
                           "00 00 00 00  00  00  0f 00"
                           "70 72 69 6d 65 73 2e 69 73 5f 70 72 69 6d 65  5b 37 5d")
RESULT_TRUE = hexbytes("04 00 00 00  03  00  00 00  01 00 00 00 00 00 00 00  74 72 75 65")
ERROR_UNKNOWN = hexbytes("12 00 00 00  04  00  00 00  01 00 00 00 00 00 00 00  01 00"
                         "6e 6f 20 73 75 63 68 20 66 75 6e 63 74 69 6f 6e")
CANCEL_42 = hexbytes("00 00 00 00  07  00  00 00  2a 00 00 00 00 00 00 00")
CANCEL_1 = hexbytes("00 00 00 00  07  00  00 00  01 00 00 00 00 00 00 00")
CALL_COUNT_STREAMED = hexbytes("17 00 00 00  02  00  00 00  03 00 00 00 00 00 00 00"
                               "00 00 00 00  00  01  0a 00"
                               "64 65 6d 6f 2e 63 6f 75 6e 74  5b 33 2c 30 5d")
PARTIAL_1 = hexbytes("01 00 00 00  08  00  00 00  03 00 00 00 00 00 00 00  31")


def test_examples_are_the_ones_in_the_protocol_doc():
    # Guards against the constants above drifting from the document.
    doc = (REPO / "docs" / "protocol.md").read_text()
    assert "00 00 00 00  07  00  00 00  2a 00 00 00 00 00 00 00" in doc
    assert "6e 6f 20 73 75 63 68 20 66 75 6e 63 74 69 6f 6e" in doc
    assert re.search(r"70 72 69 6d 65 73 2e 69 73 5f 70 72 69 6d 65\s+\"primes.is_prime\"", doc)
    assert "01 00 00 00  08  00  00 00  03 00 00 00 00 00 00 00" in doc  # a PARTIAL of call 3
    assert re.search(r"\n01\s+flags: partials", doc)


def test_hello_encodes_as_documented():
    assert _wire.encode_hello() == HELLO_CLIENT
    assert _wire.encode_hello(1, 2, 16777216) == HELLO_SERVER


def test_server_hello_decodes_as_documented():
    ((type_, call_id, body),) = _wire.FrameReader().feed(HELLO_SERVER)
    assert (type_, call_id) == (_wire.HELLO, 0)
    assert _wire.decode_hello(body) == (1, 2, 16777216)


def test_hello_ignores_bytes_a_later_minor_appends():
    assert _wire.decode_hello(bytes([1, 0, 2, 0, 0, 4, 0, 0, 9, 9, 9])) == (1, 2, 1024)


def test_call_encodes_as_documented():
    assert _wire.encode_call(1, b"primes.is_prime", b"[7]") == CALL_IS_PRIME_7


def test_call_carries_timeout_and_priority():
    frame = _wire.encode_call(5, b"a.b", b"", timeout_ms=200, priority=2)
    assert frame[16:24] == bytes([200, 0, 0, 0, 2, 0, 3, 0])
    assert _wire.parse_header(frame) == (11, _wire.CALL, 0, 0, 5)


def test_a_streamed_call_and_its_partial_encode_as_documented():
    assert _wire.encode_call(3, b"demo.count", b"[3,0]", flags=_wire.CALL_PARTIALS) == CALL_COUNT_STREAMED
    assert _wire.FrameReader().feed(PARTIAL_1) == [(_wire.PARTIAL, 3, b"1")]
    assert _wire.encode_partial(3, b"1") == PARTIAL_1


def test_result_decodes_as_documented():
    assert _wire.FrameReader().feed(RESULT_TRUE) == [(_wire.RESULT, 1, b"true")]
    assert _wire.encode_result(1, b"true") == RESULT_TRUE


def test_error_decodes_as_documented():
    ((type_, call_id, body),) = _wire.FrameReader().feed(ERROR_UNKNOWN)
    assert (type_, call_id) == (_wire.ERROR, 1)
    assert _wire.decode_error(body) == (1, "no such function")
    assert _wire.encode_error(1, 1, "no such function") == ERROR_UNKNOWN


def test_cancel_encodes_as_documented():
    assert _wire.encode_cancel(42) == CANCEL_42
    assert _wire.encode_cancel(1) == CANCEL_1


def test_ping_is_a_header_and_its_body():
    assert _wire.encode_ping(3, b"xy") == bytes([2, 0, 0, 0, 5, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]) + b"xy"


def test_error_message_tolerates_invalid_utf8():
    assert _wire.decode_error(b"\x08\x00ok \xff") == (8, "ok \ufffd")


@pytest.mark.parametrize("body", [b"", b"\x01", b"\x00\x00boom"])
def test_malformed_error_bodies_are_refused(body):
    with pytest.raises(_wire.ProtocolError):
        _wire.decode_error(body)


@pytest.mark.parametrize("header", [
    bytes([0, 0, 0, 0, 9, 0, 0, 0] + [0] * 8),  # unknown type
    bytes([0, 0, 0, 0, 0, 0, 0, 0] + [0] * 8),  # type 0
    bytes([0, 0, 0, 0, 3, 1, 0, 0] + [0] * 8),  # flags
    bytes([0, 0, 0, 0, 3, 0, 0, 1] + [0] * 8),  # reserved
])
def test_malformed_headers_are_refused_before_their_body(header):
    with pytest.raises(_wire.ProtocolError):
        _wire.FrameReader().feed(header)


@pytest.mark.parametrize("name,ok", [
    ("a", True), ("x" * 255, True), ("é" * 127, True), ("", False), ("x" * 256, False),
    ("é" * 128, False), ("a\x1fb", False), ("a\x7fb", False), ("a\nb", False), ("a b", True),
    ("a\ud800", False),
])
def test_function_names_are_checked_like_the_server_does(name, ok):
    if ok:
        assert _wire.check_name(name) == name.encode()
    else:
        with pytest.raises(ValueError):
            _wire.check_name(name)


@pytest.mark.parametrize("seconds,ms", [
    (None, 0), (0, 0), (0.2, 200), (0.3, 300), (1.0001, 1001), (1e-9, 1), (0.0005, 1),
    (5, 5000), (1e12, 0xFFFFFFFF), (float("inf"), 0xFFFFFFFF),
])
def test_timeouts_round_up_to_whole_milliseconds(seconds, ms):
    assert _wire.timeout_ms(seconds) == ms


@pytest.mark.parametrize("bad", [-1, -0.001, float("nan")])
def test_negative_or_nan_timeouts_are_refused(bad):
    with pytest.raises(ValueError):
        _wire.timeout_ms(bad)


@pytest.mark.parametrize("prio,byte", [("normal", 0), ("high", 1), ("low", 2)])
def test_priorities(prio, byte):
    assert _wire.priority_byte(prio) == byte


@pytest.mark.parametrize("bad", ["urgent", "NORMAL", 0, None])
def test_unknown_priorities_are_refused(bad):
    with pytest.raises(ValueError):
        _wire.priority_byte(bad)


# --- properties -------------------------------------------------------------------------

ids = st.integers(min_value=0, max_value=2**64 - 1)
names = st.text(st.characters(min_codepoint=0x20, blacklist_categories=("Cs",),
                              blacklist_characters="\x7f"),
                min_size=1, max_size=80).filter(lambda s: len(s.encode()) <= 255)
payloads = st.binary(max_size=600)


@settings(max_examples=300, deadline=None)
@given(ids, names, payloads, st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2]))
def test_call_round_trip(call_id, name, payload, timeout_ms, prio):
    raw_name = _wire.check_name(name)
    frame = _wire.encode_call(call_id, raw_name, payload, timeout_ms, prio)
    header = _wire.parse_header(frame)
    assert header == (len(frame) - 16, _wire.CALL, 0, 0, call_id)
    body = frame[16:]
    assert body[:6] == timeout_ms.to_bytes(4, "little") + bytes([prio, 0])
    name_len = int.from_bytes(body[6:8], "little")
    assert body[8:8 + name_len].decode() == name
    assert body[8 + name_len:] == payload
    assert header.length == _wire.call_body_size(raw_name, len(payload))


@settings(max_examples=200, deadline=None)
@given(ids, st.integers(1, 65535), st.binary(max_size=200))
def test_error_round_trip(call_id, code, message):
    ((type_, got_id, body),) = _wire.FrameReader().feed(_wire.encode_error(call_id, code, message))
    assert (type_, got_id) == (_wire.ERROR, call_id)
    assert _wire.decode_error(body) == (code, message.decode("utf-8", errors="replace"))


frames = st.lists(st.tuples(st.sampled_from(range(1, 9)), ids, payloads), max_size=12)


@settings(max_examples=300, deadline=None)
@given(frames, st.lists(st.integers(0, 10_000), max_size=20))
def test_parser_yields_the_same_frames_however_the_stream_is_split(frame_list, cuts):
    stream = b"".join(_wire.encode_frame(t, i, b) for t, i, b in frame_list)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0] + points, points + [len(stream)])]
    reader = _wire.FrameReader()
    got = [f for chunk in chunks for f in reader.feed(chunk)]
    assert got == [(t, i, b) for t, i, b in frame_list]
    assert reader.buffered == 0


@settings(max_examples=200, deadline=None)
@given(frames, st.integers(1, 15))
def test_parser_keeps_a_partial_frame_for_the_next_read(frame_list, missing):
    stream = b"".join(_wire.encode_frame(t, i, b) for t, i, b in frame_list)
    last = _wire.encode_ping(7, b"tail")
    reader = _wire.FrameReader()
    got = reader.feed(stream + last[:-missing])
    assert got == [(t, i, b) for t, i, b in frame_list]
    assert reader.buffered == len(last) - missing
    assert reader.feed(last[-missing:]) == [(_wire.PING, 7, b"tail")]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.integers(1, 8))
def test_parser_on_arbitrary_bytes_agrees_with_itself_or_refuses(data, step):
    def parse(chunks):
        reader = _wire.FrameReader()
        try:
            return [f for c in chunks for f in reader.feed(c)]
        except _wire.ProtocolError:
            return "malformed"

    whole = parse([data])
    assert parse([data[i:i + step] for i in range(0, len(data), step)]) == whole
    if whole != "malformed":
        assert all(1 <= type_ <= 7 for type_, _, _ in whole)
