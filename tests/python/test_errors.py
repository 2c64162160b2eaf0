"""Every error code maps to its exception class (docs/protocol.md §6, sdk/include/ferry/errors.h)."""

from __future__ import annotations

import asyncio
import pickle
import re

import pytest

import ferry
from conftest import REPO

TABLE = [
    (1, "unknown_function", ferry.UnknownFunction),
    (2, "bad_request", ferry.BadRequest),
    (3, "busy", ferry.Busy),
    (4, "timeout", ferry.Timeout),
    (5, "cancelled", ferry.Cancelled),
    (6, "worker_crashed", ferry.WorkerCrashed),
    (7, "out_of_memory", ferry.OutOfMemory),
    (8, "plugin_error", ferry.PluginError),
    (9, "permission_denied", ferry.PermissionDenied),
    (10, "shutting_down", ferry.ShuttingDown),
    (11, "sandbox_violation", ferry.SandboxViolation),
    (12, "call_depth_exceeded", ferry.CallDepthExceeded),
    (13, "unsupported_version", ferry.UnsupportedVersion),
    (14, "internal", ferry.Internal),
]


@pytest.mark.parametrize("number,name,cls", TABLE)
def test_each_code_maps_to_its_class(number, name, cls):
    err = ferry.error_for(number, "the server's words")
    assert type(err) is cls
    assert isinstance(err, ferry.Error)
    assert (err.code, err.code_number) == (name, number)
    assert (str(err), err.message) == ("the server's words", "the server's words")


def test_the_table_matches_errors_h():
    header = (REPO / "sdk" / "include" / "ferry" / "errors.h").read_text()
    codes = {int(n): name.lower() for name, n in re.findall(r"FERRY_E_(\w+) = (\d+)", header)}
    assert codes == {number: name for number, name, _ in TABLE}


@pytest.mark.parametrize("number", [15, 999, 65535])
def test_unknown_codes_map_to_the_base_class_keeping_the_number(number):
    err = ferry.error_for(number, "from the future")
    assert type(err) is ferry.Error
    assert err.code_number == number
    assert err.code == "unknown_code"
    assert str(err) == "from the future"
    assert not err.retryable


def test_retryable_codes_are_the_ones_the_protocol_says():
    assert {cls.code for _, _, cls in TABLE if cls.retryable} == {"busy", "worker_crashed",
                                                                 "shutting_down"}


def test_timeout_is_also_a_builtin_timeout_error():
    assert isinstance(ferry.Timeout("x"), TimeoutError)
    assert str(ferry.Timeout("deadline passed")) == "deadline passed"


def test_cancelled_is_not_an_asyncio_cancellation():
    assert not isinstance(ferry.Cancelled("x"), asyncio.CancelledError)
    assert issubclass(ferry.Cancelled, Exception)


def test_connection_lost_is_a_ferry_error_and_a_connection_error():
    err = ferry.ConnectionLost("gone")
    assert isinstance(err, ferry.Error) and isinstance(err, ConnectionError)
    assert err.code == "connection_lost" and err.code_number is None


@pytest.mark.parametrize("number", [1, 4, 14, 77])
def test_errors_survive_pickling(number):
    err = pickle.loads(pickle.dumps(ferry.error_for(number, "msg")))
    assert (type(err), err.code_number, err.message) == (type(ferry.error_for(number)), number, "msg")


def test_connection_lost_keeps_the_server_error_through_pickling():
    lost = ferry.ConnectionLost("the server closed the connection: bad frame",
                                server_error=ferry.error_for(2, "bad frame"))
    err = pickle.loads(pickle.dumps(lost))
    assert type(err) is ferry.ConnectionLost and str(err) == str(lost)
    assert type(err.server_error) is ferry.BadRequest and str(err.server_error) == "bad frame"
    assert pickle.loads(pickle.dumps(ferry.ConnectionLost("eof"))).server_error is None
