"""Exceptions: one class per Ferry error code (sdk/include/ferry/errors.h), all under ferry.Error.

Plain values, safe to share between threads. Each carries .code (the stable
snake_case name, e.g. "unknown_function"), .code_number (the wire number),
.message (the server's text, also str(e)) and .retryable (docs/protocol.md §6).

Two deliberate choices:
- Timeout also subclasses the builtin TimeoutError, so `except TimeoutError`
  catches a server-side deadline just like asyncio.timeout() would.
- Cancelled does NOT subclass asyncio.CancelledError: a `cancelled` reply is the
  outcome of a call, while CancelledError means "this task is being cancelled";
  mixing them would make asyncio (TaskGroup, timeout()) treat the awaiting task
  as cancelled. Cancelling your own awaiting task raises CancelledError, as
  usual, not ferry.Cancelled.
"""

from __future__ import annotations


class Error(Exception):
    """A call or the connection failed; the base of every Ferry exception.

    Raised as is for a code this client does not know (a newer server): then
    .code is "unknown_code" and .code_number the number the server sent.
    """

    code: str = "unknown_code"
    code_number: int | None = None
    retryable: bool = False

    def __init__(self, message: str = "", *, code_number: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code_number is not None:
            self.code_number = code_number

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"

    def __reduce__(self):
        # Keeps code_number and the attributes of subclasses (ConnectionLost's
        # server_error) through pickling, e.g. across processes.
        return (_rebuild, (type(self), self.message, self.code_number), self.__dict__)


def _rebuild(cls, message, code_number):
    return cls(message, code_number=code_number)


class UnknownFunction(Error):
    """No function is registered under that name."""
    code, code_number = "unknown_function", 1


class BadRequest(Error):
    """Malformed request or bad arguments (also raised locally, before sending, for
    a request the server would refuse: bad function name, frame too large)."""
    code, code_number = "bad_request", 2


class Busy(Error):
    """The plugin's queue is full: retry after a backoff."""
    code, code_number, retryable = "busy", 3, True


class Timeout(Error, TimeoutError):
    """The call passed its deadline (the server answers at the deadline)."""
    code, code_number = "timeout", 4


class Cancelled(Error):
    """The server answered `cancelled` (not asyncio.CancelledError: see the module doc)."""
    code, code_number = "cancelled", 5


class WorkerCrashed(Error):
    """The worker process running the call died; retry once if idempotent."""
    code, code_number, retryable = "worker_crashed", 6, True


class OutOfMemory(Error):
    code, code_number = "out_of_memory", 7


class PluginError(Error):
    """The function reported an error; the message is the function's."""
    code, code_number = "plugin_error", 8


class PermissionDenied(Error):
    code, code_number = "permission_denied", 9


class ShuttingDown(Error):
    """The server is stopping; retry on a new connection once one is back."""
    code, code_number, retryable = "shutting_down", 10, True


class SandboxViolation(Error):
    code, code_number = "sandbox_violation", 11


class CallDepthExceeded(Error):
    code, code_number = "call_depth_exceeded", 12


class UnsupportedVersion(Error):
    code, code_number = "unsupported_version", 13


class Internal(Error):
    """A bug in Ferry."""
    code, code_number = "internal", 14


class ConnectionLost(Error, ConnectionError):
    """The connection ended before the call was answered (EOF, socket error,
    close(), or a connection-level ERROR from the server, then in .server_error).

    Never retried by the client: whether the call ran is unknown.
    """

    code = "connection_lost"

    def __init__(self, message: str = "", *, server_error: Error | None = None,
                 code_number: int | None = None) -> None:
        super().__init__(message, code_number=code_number)
        self.server_error = server_error


BY_NUMBER: dict[int, type[Error]] = {
    cls.code_number: cls
    for cls in (UnknownFunction, BadRequest, Busy, Timeout, Cancelled, WorkerCrashed,
                OutOfMemory, PluginError, PermissionDenied, ShuttingDown, SandboxViolation,
                CallDepthExceeded, UnsupportedVersion, Internal)
}


def error_for(code_number: int, message: str = "") -> Error:
    """The exception for a wire error code; ferry.Error itself for an unknown code."""
    cls = BY_NUMBER.get(code_number)
    if cls is None:
        return Error(message, code_number=code_number)
    return cls(message)
