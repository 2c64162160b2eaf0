"""Ferry from asyncio: the event loop stays free while ferryd does the work.

Start ferryd (build/ferryd --config config/server.toml), then run
    PYTHONPATH=sdk/python python3 sdk/python/examples/seed.py
It connects to $FERRY_SOCKET, else /tmp/ferry.sock.
"""

import asyncio

import ferry

NUMBERS = [112272535095293, 112582705942171, 115280095190773, 115797848077099, 1099726899285419]


async def main():
    loop = asyncio.get_running_loop()

    # (a) Five calls in flight at once on one connection; gather keeps input order.
    with ferry.FerryExecutor() as executor:
        is_prime = ferry.fn("primes.is_prime")
        flags = await asyncio.gather(*(loop.run_in_executor(executor, is_prime, n) for n in NUMBERS))
    for n, flag in zip(NUMBERS, flags):
        print(f"{n} is prime: {flag}")

    # (b) A blocking function through a custom executor, as in asyncio's
    # run_in_executor example, while a ticker shows the loop is not blocked.
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    with ferry.FerryExecutor() as pool:
        slept = await loop.run_in_executor(pool, ferry.fn("demo.sleep_ms"), 300)
    ticking.cancel()
    print(f"demo.sleep_ms slept {slept} ms; meanwhile the event loop ticked {ticks} times")


asyncio.run(main())
