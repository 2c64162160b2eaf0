"""Throughput of one ferry.Client connection: demo.noop calls/s and PING round trips/s.

    PYTHONPATH=sdk/python python3 sdk/python/examples/bench.py [--socket PATH]
        [--concurrency 1,64,1024] [--seconds 3] [--runs 3] [--profile]

Each measurement keeps N calls in flight on one connection for --seconds
(after a short warm-up) and counts the replies. demo.noop is a raw function
(payload b"", reply b"null"), so this measures the client, the protocol and
ferryd's dispatch, not JSON or plugin work. --profile runs the largest
concurrency once under cProfile and prints the top functions.
"""

import argparse
import asyncio
import cProfile
import pstats
import statistics
import time

import ferry


async def rate(client, op, concurrency, seconds):
    """Replies per second with `concurrency` loops each awaiting op() back to back."""
    stop = time.monotonic() + seconds
    count = 0

    async def loop():
        nonlocal count
        while time.monotonic() < stop:
            await op()
            count += 1

    start = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return count / (time.monotonic() - start)


async def measure(path, concurrency, seconds):
    async with ferry.connect(path) as client:
        ops = {"noop": lambda: client.call_raw("demo.noop", b""), "ping": client.ping}
        result = {}
        for name, op in ops.items():
            await rate(client, op, concurrency, min(0.3, seconds))  # warm-up
            result[name] = await rate(client, op, concurrency, seconds)
        return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", default=None, help="default: $FERRY_SOCKET or /tmp/ferry.sock")
    parser.add_argument("--concurrency", default="1,64,1024")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(asyncio.run, measure(args.socket, max(levels), args.seconds))
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return
    print(f"{'in flight':>9} {'op':>5} {'min/s':>10} {'median/s':>10} {'max/s':>10}")
    for n in levels:
        runs = [asyncio.run(measure(args.socket, n, args.seconds)) for _ in range(args.runs)]
        for op in ("noop", "ping"):
            values = sorted(r[op] for r in runs)
            print(f"{n:>9} {op:>5} {values[0]:>10.0f} {statistics.median(values):>10.0f} "
                  f"{values[-1]:>10.0f}", flush=True)


if __name__ == "__main__":
    main()
