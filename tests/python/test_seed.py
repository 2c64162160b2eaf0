"""sdk/python/examples/seed.py, run as users run it, against a real ferryd."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import REPO, is_prime


def test_seed_example_prints_primality_and_a_free_loop(ferryd):
    env = dict(os.environ, FERRY_SOCKET=ferryd.socket, PYTHONPATH=str(REPO / "sdk" / "python"))
    run = subprocess.run([sys.executable, str(REPO / "sdk" / "python" / "examples" / "seed.py")],
                         env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    numbers = [112272535095293, 112582705942171, 115280095190773, 115797848077099,
               1099726899285419]
    expected = [True, True, True, True, False]
    assert [is_prime(n) for n in numbers] == expected  # checked here, not taken on trust
    assert lines[:5] == [f"{n} is prime: {p}" for n, p in zip(numbers, expected)]
    m = re.fullmatch(r"demo\.sleep_ms slept (\d+) ms; meanwhile the event loop ticked (\d+) times",
                     lines[5])
    assert m, lines
    assert int(m[1]) == 300
    assert int(m[2]) >= 1, "the event loop never ran while the call was in flight"
    assert len(lines) == 6
