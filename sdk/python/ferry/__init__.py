"""Ferry's Python client: call functions hosted by ferryd, from asyncio or via an Executor.

    import asyncio, ferry

    async def main():
        async with ferry.connect() as client:         # $FERRY_SOCKET or /tmp/ferry.sock
            print(await client.call("primes.is_prime", 112272535095293))   # True

    asyncio.run(main())

- ferry.connect(path=None) -> Client: one connection, any number of concurrent
  calls (call, call_raw, ping). Cancelling an awaiting task cancels its call on
  the server.
- client.stream(fn, *args) -> ferry.Stream: `async for part in stream` yields a
  function's partial results as they come; stream.result holds its result.
- ferry.FerryExecutor / ferry.fn: the same calls as a concurrent.futures.Executor,
  e.g. `await loop.run_in_executor(pool, ferry.fn("primes.is_prime"), n)`.
- ferry.Error and one subclass per error code (ferry.Timeout, ferry.Busy, ...),
  plus ferry.ConnectionLost.

Standard library only; wire protocol 1.2 (docs/protocol.md).
"""

from .client import DEFAULT_SOCKET, Client, Stream, connect, default_path
from .errors import (BadRequest, Busy, CallDepthExceeded, Cancelled, ConnectionLost, Error,
                     Internal, OutOfMemory, PermissionDenied, PluginError, SandboxViolation,
                     ShuttingDown, Timeout, UnknownFunction, UnsupportedVersion, WorkerCrashed,
                     error_for)
from .executor import FerryExecutor, fn

__version__ = "1.2.0"

__all__ = [
    "DEFAULT_SOCKET", "Client", "Stream", "connect", "default_path", "FerryExecutor", "fn", "error_for",
    "Error", "ConnectionLost", "UnknownFunction", "BadRequest", "Busy", "Timeout", "Cancelled",
    "WorkerCrashed", "OutOfMemory", "PluginError", "PermissionDenied", "ShuttingDown",
    "SandboxViolation", "CallDepthExceeded", "UnsupportedVersion", "Internal",
]
