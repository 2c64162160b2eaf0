"""Fixtures: real ferryd processes with the bundled plugins, on private sockets.

FERRY_BUILD_DIR (default <repo>/build) must hold ferryd, ferry-worker and
plugins/{primes,demo}.so; tests using the fixture plugins also need
tests/fixtures/*.so there (they are skipped without them).
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Awaitable, Callable

import pytest
from hypothesis import settings

settings.register_profile("ferry", database=None, deadline=None)  # no .hypothesis/ litter
settings.load_profile("ferry")

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "sdk" / "python"))

import ferry  # noqa: E402

BUILD = pathlib.Path(os.environ.get("FERRY_BUILD_DIR", REPO / "build")).resolve()
START_TIMEOUT = 15.0  # s for ferryd to say "ready"
STOP_TIMEOUT = 15.0  # s for ferryd to exit after SIGTERM before it is killed
WAIT = 20.0  # s: the bound of every "until" wait (generous for ASan builds)

# Settings shared by every server: big queues so that thousands of calls in
# flight are admitted, and a short drain so that teardown stays quick.
SERVER_TOML = "drain_timeout_ms = 2000\n"
PRIMES_TOML = '[plugins.primes]\nexecutor = "thread"\nworkers = 2\nqueue_limit = 1000000\n'


def demo_toml(executor: str, workers: int = 2, queue_limit: int = 1000000, extra: str = "") -> str:
    return (f'[plugins.demo]\nexecutor = "{executor}"\nworkers = {workers}\n'
            f"queue_limit = {queue_limit}\n{extra}")


def is_asan_build() -> bool:
    return b"__asan_init" in (BUILD / "ferryd").read_bytes()


class Ferryd:
    """One ferryd process in its own temporary directory (config, socket, log, plugin copies)."""

    def __init__(self, plugins: list[pathlib.Path], toml: str, server_toml: str = SERVER_TOML):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="ferry-py-"))
        self.dir.chmod(0o755)  # sandboxed workers run as another user and must reach plugins/
        (self.dir / "plugins").mkdir()
        for p in plugins:
            (self.dir / "plugins" / p.name).symlink_to(p)
        self.config = self.dir / "server.toml"
        self.config.write_text('[server]\nsocket_path = "ferry.sock"\nplugin_dir = "plugins"\n'
                               f'log_level = "debug"\n{server_toml}\n{toml}\n')
        self.socket = str(self.dir / "ferry.sock")
        self.log_path = self.dir / "ferryd.log"
        self.proc: subprocess.Popen | None = None
        self._start()

    def _start(self) -> None:
        ready_r, ready_w = os.pipe()
        env = dict(os.environ, TMPDIR=str(self.dir))  # its private plugin copies go here
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(BUILD / "ferryd"), "--config", str(self.config), "--ready-fd", str(ready_w)],
                pass_fds=(ready_w,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=log, env=env)
        os.close(ready_w)
        try:
            ready = _read_until(ready_r, b"ready", START_TIMEOUT)
        finally:
            os.close(ready_r)
        if not ready:
            self.stop(signal.SIGKILL)
            raise RuntimeError(f"ferryd did not start within {START_TIMEOUT} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError as e:
            return f"(no log: {e})"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Sends sig and waits for the exit (SIGKILL after timeout); returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(STOP_TIMEOUT)

    def cleanup(self) -> None:
        self.stop()
        if not os.environ.get("FERRY_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"<Ferryd {self.dir}>"


def _read_until(fd: int, token: bytes, timeout: float) -> bool:
    got = b""
    deadline = time.monotonic() + timeout
    while token not in got:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return False
        chunk = os.read(fd, 64)
        if not chunk:
            return False  # ferryd exited before it was ready
        got += chunk
    return True


def is_prime(n: int) -> bool:
    """Deterministic Miller-Rabin for n < 3.3e24: the tests' own check of primes.is_prime."""
    if n < 2:
        return False
    bases = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)
    for p in bases:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in bases:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def plugin(name: str) -> pathlib.Path:
    return BUILD / "plugins" / f"{name}.so"


def fixture_plugin(name: str) -> pathlib.Path:
    path = BUILD / "tests" / "fixtures" / f"{name}.so"
    if not path.exists():
        pytest.skip(f"fixture plugin {path} not built")
    return path


def _server(plugins: list[pathlib.Path], toml: str, server_toml: str = SERVER_TOML):
    d = Ferryd(plugins, toml, server_toml)
    try:
        yield d
    finally:
        d.cleanup()


@pytest.fixture(scope="session")
def ferryd():
    """primes in threads, demo in 2 sandboxed worker processes (like config/server.toml)."""
    yield from _server([plugin("primes"), plugin("demo")], PRIMES_TOML + demo_toml("process"))


@pytest.fixture(scope="session")
def ferryd_thread():
    """demo in a pool of 2 threads with room for 2 queued calls (so a 5th call is busy)."""
    yield from _server([plugin("primes"), plugin("demo")],
                       PRIMES_TOML + demo_toml("thread", workers=2, queue_limit=2))


@pytest.fixture
def make_ferryd(request):
    """A factory of private servers, for tests that stop or kill theirs."""
    made: list[Ferryd] = []
    request.node._ferryds = made  # for the failure report

    def make(toml: str = PRIMES_TOML + demo_toml("thread"), server_toml: str = SERVER_TOML,
             plugins: list[pathlib.Path] | None = None) -> Ferryd:
        d = Ferryd(plugins or [plugin("primes"), plugin("demo")], toml, server_toml)
        made.append(d)
        return d

    yield make
    for d in list(made):
        d.cleanup()


@pytest.fixture
async def client(ferryd):
    async with ferry.connect(ferryd.socket) as c:
        yield c


@pytest.fixture
async def thread_client(ferryd_thread):
    async with ferry.connect(ferryd_thread.socket) as c:
        yield c


# --- helpers ----------------------------------------------------------------------------

async def until(probe: Callable[[], Awaitable[Any]], what: str, timeout: float = WAIT,
                seen: Callable[[], str] | None = None) -> Any:
    """Calls probe() until it returns something truthy, and returns that; fails naming
    `what` after timeout, with seen() (default: the last probe's value)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.005)  # a poll interval, not a synchronization
    pytest.fail(f"never reached within {timeout} s: {what}; "
                f"{seen() if seen else f'last probe: {last!r}'}")


async def plugin_status(c: ferry.Client, name: str) -> dict:
    status = await c.call("ferry.status")
    for p in status["plugins"]:
        if p["name"] == name:
            return p
    pytest.fail(f"plugin {name} not in ferry.status: {status}")


async def status_until(c: ferry.Client, name: str, pred: Callable[[dict], bool], what: str,
                       timeout: float = WAIT) -> dict:
    """Polls ferry.status until pred(status of plugin `name`) holds; returns that status."""
    last: dict = {}

    async def probe() -> bool:
        nonlocal last
        last = await plugin_status(c, name)
        return pred(last)

    await until(probe, what, timeout, seen=lambda: f"last status of {name}: {last}")
    return last


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test's report carries the log of every ferryd it used."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        servers = [v for v in getattr(item, "funcargs", {}).values() if isinstance(v, Ferryd)]
        servers += getattr(item, "_ferryds", [])
        for d in servers:
            report.sections.append((f"ferryd log {d.dir}", d.log()[-20000:]))
