"""Error codes only the test fixture plugins reach (build/tests/fixtures/*.so):
call_depth_exceeded, sandbox_violation, permission_denied, out_of_memory."""

from __future__ import annotations

import pytest

import ferry
from conftest import fixture_plugin, is_asan_build, plugin


@pytest.fixture(scope="module")
def ops_server(request):
    from conftest import Ferryd
    d = Ferryd([fixture_plugin("fixture_ops_v1")], '[plugins.ops]\nexecutor = "thread"\nworkers = 2\n',
               server_toml="drain_timeout_ms = 2000\nmax_call_depth = 10\n")
    yield d
    d.cleanup()


@pytest.fixture(scope="module")
def hostile_server():
    from conftest import Ferryd
    d = Ferryd([fixture_plugin("fixture_hostile"), plugin("primes")],
               '[plugins.hostile]\nexecutor = "process"\nworkers = 2\ntimeout_ms = 5000\n'
               "[plugins.hostile.sandbox]\nmemory_mb = 512\n")
    yield d
    d.cleanup()


@pytest.fixture
async def hostile(hostile_server):
    async with ferry.connect(hostile_server.socket) as c:
        status = await c.call("ferry.status")
        if "hostile" in status["disabled"]:
            pytest.skip(f"sandbox unavailable here: {status['disabled']['hostile']}")
        yield c
        assert await c.call("hostile.ok") is True  # a fresh worker serves after each escape


async def test_call_depth_exceeded(ops_server):
    async with ferry.connect(ops_server.socket) as c:
        assert await c.call("ops.recurse", 10) == 10
        with pytest.raises(ferry.CallDepthExceeded) as e:
            await c.call("ops.recurse", 11)
        assert e.value.code == "call_depth_exceeded" and e.value.code_number == 12


async def test_sandbox_violation(hostile):
    with pytest.raises(ferry.SandboxViolation) as e:
        await hostile.call("hostile.ptrace_parent")
    assert e.value.code == "sandbox_violation" and str(e.value)


async def test_permission_denied(hostile):
    with pytest.raises(ferry.PermissionDenied) as e:
        await hostile.call("hostile.read_file", "/etc/shadow")
    assert e.value.code == "permission_denied"


async def test_out_of_memory(hostile):
    if is_asan_build():
        pytest.skip("ASan's shadow memory rules out an address-space limit")
    with pytest.raises(ferry.OutOfMemory) as e:
        await hostile.call("hostile.alloc_gib", 4)
    assert e.value.code == "out_of_memory"
