"""The installed Ferry, as `cmake --install` lays it out (dist/, README's
"Running as a service"). Two checks, one ctest test each:

  service  installs into a fresh prefix, runs the installed ferryd with the
           installed config (only socket_path moved to a private socket: the
           installed one, /run/ferry/ferry.sock, is the service's) and the
           installed plugins, calls them with the installed ferry, and stops it.
  unit     installs, then `systemd-analyze verify`s the installed
           ferryd.service and checks what it promises (skipped, exit 77,
           without systemd-analyze).

Standard library only: run by Debian's /usr/bin/python3, no pytest.
usage: test_install.py service|unit --build BUILD_DIR --cmake CMAKE
"""
from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

SKIP = 77
READY_WAIT_S = 60  # bounds, not delays: ferryd under ASan starts slowly
STOP_WAIT_S = 60
CALL_TIMEOUT_MS = "20000"
INSTALLED_SOCKET = "/run/ferry/ferry.sock"

# What the install must hold, relative to the prefix.
LAYOUT = [
    "bin/ferryd", "bin/ferry", "libexec/ferry/ferry-worker",
    "lib/ferry/plugins/primes.so", "lib/ferry/plugins/demo.so",
    "etc/ferry/server.toml", "lib/systemd/system/ferryd.service",
    "include/ferry/plugin.h", "lib/cmake/Ferry/FerryConfig.cmake",
]


class Failure(Exception):
    pass


def check(cond: bool, what: str) -> None:
    if not cond:
        raise Failure(what)


def install(build: str, cmake: str, prefix: Path) -> None:
    done = subprocess.run([cmake, "--install", build, "--prefix", str(prefix)],
                          capture_output=True, text=True, timeout=300)
    check(done.returncode == 0, f"cmake --install failed:\n{done.stdout}{done.stderr}")
    for rel in LAYOUT:
        check((prefix / rel).is_file(), f"not installed: {rel}")
    for rel in ("bin/ferryd", "bin/ferry", "libexec/ferry/ferry-worker"):
        check(os.access(prefix / rel, os.X_OK), f"not executable: {rel}")


def config_value(text: str, key: str) -> str:
    found = re.findall(rf'^{key} = "([^"]*)"$', text, re.M)
    check(len(found) == 1, f"installed server.toml: expected one {key} line, found {found}")
    return found[0]


def private_config(prefix: Path, sock: Path) -> Path:
    """The installed config, checked, with only its socket_path replaced."""
    text = (prefix / "etc/ferry/server.toml").read_text()
    check(config_value(text, "socket_path") == INSTALLED_SOCKET, "installed socket_path")
    check(config_value(text, "plugin_dir") == str(prefix / "lib/ferry/plugins"), "installed plugin_dir")
    path = prefix / "etc/ferry/test.toml"
    path.write_text(text.replace(f'socket_path = "{INSTALLED_SOCKET}"', f'socket_path = "{sock}"'))
    return path


class Ferryd:
    """The installed ferryd, started with --ready-fd and, as systemd would,
    $NOTIFY_SOCKET (a datagram socket of ours); its log in a file."""

    def __init__(self, prefix: Path, config: Path, tmp: Path):
        self.log_path = tmp / "ferryd.log"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(tmp / "notify.sock"))
        env = dict(os.environ, NOTIFY_SOCKET=str(tmp / "notify.sock"))
        r, w = os.pipe()
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen([str(prefix / "bin/ferryd"), "--config", str(config), "--ready-fd", str(w)],
                                         pass_fds=(w,), stdout=out, stderr=subprocess.STDOUT, env=env)
        os.close(w)
        try:
            self._wait_ready(r)
        finally:
            os.close(r)

    def notified(self) -> bytes:
        """What ferryd told $NOTIFY_SOCKET by the time it was ready ("" if nothing)."""
        self.notify.setblocking(False)
        try:
            return self.notify.recv(4096)
        except BlockingIOError:
            return b""

    def _wait_ready(self, r: int) -> None:
        readable, _, _ = select.select([r], [], [], READY_WAIT_S)
        line = os.read(r, 64) if readable else b""
        if line != b"ready\n":
            self.kill()
            raise Failure(f"installed ferryd did not report ready (got {line!r}):\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=STOP_WAIT_S)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def ferry(prefix: Path, sock: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(prefix / "bin/ferry"), "--socket", str(sock), *args],
                          capture_output=True, text=True, timeout=60)


def expect(done: subprocess.CompletedProcess, out: str, what: str) -> None:
    check(done.returncode == 0 and done.stdout.strip() == out,
          f"{what}: exit {done.returncode}, stdout {done.stdout!r}, stderr {done.stderr!r}")


def check_calls(prefix: Path, sock: Path) -> None:
    """The installed CLI calls both installed plugins; demo's workers are the installed ferry-worker."""
    expect(ferry(prefix, sock, "call", "--timeout", CALL_TIMEOUT_MS, "primes.is_prime", "112272535095293"), "true",
           "primes.is_prime")
    ping = ferry(prefix, sock, "ping")
    check(ping.returncode == 0 and "pong from" in ping.stdout, f"ping: {ping.returncode} {ping.stdout}{ping.stderr}")
    status = json.loads(ferry(prefix, sock, "status", "--json").stdout)
    if "demo" in status["disabled"]:  # a kernel without the sandbox: demo runs in process mode
        print(f"NOTE: demo (process executor) not started here: {status['disabled']['demo']}")
        return
    # A worker that cannot start (not found, say) would leave this call queued: bounded.
    expect(ferry(prefix, sock, "call", "--timeout", CALL_TIMEOUT_MS, "demo.echo", '{"a":[1,2]}'), '{"a":[1,2]}',
           "demo.echo")
    plugins = {p["name"]: p for p in json.loads(ferry(prefix, sock, "status", "--json").stdout)["plugins"]}
    for name, p in plugins.items():
        check(p["health"] == "ok", f"{name}: health {p['health']}: {p['health_reason']}")
    demo = plugins["demo"]
    worker = prefix / "libexec/ferry/ferry-worker"
    pids = [w["pid"] for w in demo["processes"] if w["pid"] > 0]
    check(len(pids) > 0, f"demo has no worker process: {demo}")
    for pid in pids:
        exe = os.readlink(f"/proc/{pid}/exe")
        check(exe == str(worker), f"demo's worker {pid} runs {exe}, not the installed {worker}")


def run_service(build: str, cmake: str, tmp: Path) -> int:
    prefix = tmp / "prefix"
    install(build, cmake, prefix)
    sock = tmp / "ferry.sock"
    d = Ferryd(prefix, private_config(prefix, sock), tmp)
    try:
        # Type=notify: READY=1 was sent before the ready fd was written.
        notify = unit_key((prefix / "lib/systemd/system/ferryd.service").read_text(), "Type") == "notify"
        check(d.notified() == (b"READY=1" if notify else b""), f"sd_notify with Type={'notify' if notify else 'simple'}")
        check_calls(prefix, sock)
        status = d.stop()
        check(status == 0, f"ferryd exited {status} on SIGTERM:\n{d.log()}")
        check(not sock.exists(), "ferryd left its socket behind")
        check(ferry(prefix, sock, "ping").returncode == 3, "ferry ping after the stop must fail to connect")
    finally:
        d.kill()
    print("installed ferryd served the installed plugins and stopped cleanly")
    return 0


def unit_key(unit: str, key: str) -> str:
    found = re.findall(rf"^{key}=(.*)$", unit, re.M)
    check(len(found) == 1, f"ferryd.service: expected one {key}=, found {found}")
    return found[0]


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(s|min)?", value)
    check(m is not None, f"TimeoutStopSec={value}: not a plain duration")
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


def check_unit_text(prefix: Path, unit: str) -> None:
    """What README and the issue promise of the unit, with the prefix's paths."""
    exec_start = unit_key(unit, "ExecStart")
    check(exec_start == f"{prefix}/bin/ferryd --config {prefix}/etc/ferry/server.toml", f"ExecStart={exec_start}")
    check(unit_key(unit, "Type") in ("notify", "simple"), "Type")
    check(unit_key(unit, "ExecReload") == "/bin/kill -HUP $MAINPID", "ExecReload sends SIGHUP")
    check(unit_key(unit, "RuntimeDirectory") == "ferry", "RuntimeDirectory holds the socket")
    check(unit_key(unit, "KillMode") == "mixed", "KillMode=mixed: SIGTERM to ferryd alone")
    # Longer than the drain (drain_timeout_ms, 10 s by default) + 1 s for replies + 10 s of hooks.
    config = (prefix / "etc/ferry/server.toml").read_text()
    drain_ms = int(re.search(r"^# drain_timeout_ms = (\d+)$", config, re.M).group(1))
    check(seconds(unit_key(unit, "TimeoutStopSec")) * 1000 > drain_ms + 11000, "TimeoutStopSec too short")
    for forbidden in ("RestrictNamespaces", "PrivateUsers", "SystemCallFilter", "CapabilityBoundingSet"):
        check(re.search(rf"^{forbidden}=", unit, re.M) is None, f"{forbidden}= would break the worker sandbox")


def run_unit(build: str, cmake: str, tmp: Path) -> int:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        print("SKIP: systemd-analyze is not installed; ferryd.service is not verified here")
        return SKIP
    prefix = tmp / "prefix"
    install(build, cmake, prefix)
    unit_path = prefix / "lib/systemd/system/ferryd.service"
    check_unit_text(prefix, unit_path.read_text())
    done = subprocess.run([analyze, "verify", str(unit_path)], capture_output=True, text=True, timeout=120)
    check(done.returncode == 0, f"systemd-analyze verify failed:\n{done.stdout}{done.stderr}")
    mentions = [line for line in (done.stdout + done.stderr).splitlines() if "ferryd.service" in line]
    check(not mentions, "systemd-analyze verify complains:\n" + "\n".join(mentions))
    print("systemd-analyze verify: ferryd.service OK")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["service", "unit"])
    ap.add_argument("--build", required=True)
    ap.add_argument("--cmake", required=True)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ferry-install-"))
    os.chmod(tmp, 0o755)  # ferryd runs as root: its workers, as nobody, must reach the plugins
    try:
        run = run_service if args.what == "service" else run_unit
        return run(args.build, args.cmake, tmp)
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
