"""`ferry ping` exits 0 only while the server serves. A draining ferryd still
answers PINGs (each PING gets its PONG) but every call shutting_down; a
stand-in does exactly that on cue, which a real ferryd's drain cannot
(ping connects, and so misses the drain, in well under a millisecond)."""
import asyncio

import pytest

from conftest import BUILD
from fake_server import FakeServer, WAIT
from ferry import _wire

SHUTTING_DOWN = 10


@pytest.mark.parametrize("draining", [False, True])
async def test_ping_exits_0_only_if_the_server_still_takes_calls(tmp_path, draining):
    async with FakeServer(str(tmp_path / "s.sock"), minor=2) as fake:
        cli = await asyncio.create_subprocess_exec(
            str(BUILD / "ferry"), "--socket", fake.path, "ping",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        conn = await fake.accept()
        ping = await conn.frame()
        assert ping.type == _wire.PING
        conn.send(_wire.encode_frame(_wire.PONG, ping.call_id, ping.body))
        call = await conn.frame()
        assert call.type == _wire.CALL and b"ferry.status" in call.body
        if draining:
            conn.send(_wire.encode_error(call.call_id, SHUTTING_DOWN, "ferryd is shutting down"))
        else:
            conn.send(_wire.encode_result(call.call_id, b'{"plugins":[],"disabled":{}}'))
        out, err = await asyncio.wait_for(cli.communicate(), WAIT)
    assert b"pong from" in out
    if draining:
        assert cli.returncode == 10 + SHUTTING_DOWN
        assert b"shutting_down" in err and b"takes no new" in err
    else:
        assert cli.returncode == 0, err
