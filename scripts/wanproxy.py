#!/usr/bin/env python3
"""A WAN link on loopback: a TCP proxy that adds latency and caps bandwidth.

    scripts/wanproxy.py --to HOST:PORT --rtt MS --mbit N [--listen PORT] [--port-file F]

Every connection accepted on 127.0.0.1:PORT (0: any free port, written to --port-file
and to stdout) is forwarded to HOST:PORT. Each direction behaves like one direction of
a link whose round trip is --rtt milliseconds and whose rate is --mbit megabits per
second: a chunk read at time t leaves at max(t + rtt/2, when the previous chunk of
that direction finished) and occupies the direction for len * 8 / rate seconds. The
rate is shared by all connections of one proxy (one link), as on a real line; chunks
are at most 16 KiB so pacing stays smooth, and at most 4 MiB wait in each direction
of a connection (the link's buffer: beyond, the proxy stops reading). --mbit 0 means no cap, --rtt 0 no delay.

The kernel's netem qdisc is not available on these machines, hence user space. The
proxy reports, on SIGTERM or SIGINT, the bytes it carried each way (stderr), so a
benchmark can show the bytes on the wire.
"""

import argparse
import asyncio
import signal
import sys
import time

CHUNK = 16 * 1024


class Direction:
    """One direction of the link: a pacing clock shared by every connection."""

    def __init__(self, delay, rate_bytes):
        self.delay = delay
        self.rate = rate_bytes
        self.free_at = 0.0
        self.bytes = 0

    def schedule(self, n, now):
        """When a chunk of n bytes read now is delivered."""
        start = max(now, self.free_at)
        busy = n / self.rate if self.rate else 0.0
        self.free_at = start + busy
        self.bytes += n
        return self.free_at + self.delay


async def pump(reader, writer, direction):
    """Read chunks and deliver each at its scheduled time, in order."""
    loop = asyncio.get_running_loop()
    # A bounded queue is the link's buffer: a full one stops reading, so the
    # sender feels the link as TCP over a real line does (4 MiB at most).
    queue = asyncio.Queue(maxsize=256)

    async def deliver():
        while True:
            item = await queue.get()
            if item is None:
                break
            at, data = item
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                writer.write(data)
                await writer.drain()
            except (ConnectionError, OSError):
                break
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            pass

    task = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            await queue.put((direction.schedule(len(data), loop.time()), data))
    except (ConnectionError, OSError):
        pass
    await queue.put(None)
    await task


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--to", required=True, help="HOST:PORT to forward to")
    ap.add_argument("--listen", type=int, default=0)
    ap.add_argument("--rtt", type=float, default=0.0, help="round trip, milliseconds")
    ap.add_argument("--mbit", type=float, default=0.0, help="rate each way, Mbit/s (0: no cap)")
    ap.add_argument("--port-file")
    a = ap.parse_args()
    host, port = a.to.rsplit(":", 1)
    rate = a.mbit * 1e6 / 8
    up = Direction(a.rtt / 2000.0, rate)
    down = Direction(a.rtt / 2000.0, rate)

    async def handle(client_r, client_w):
        try:
            server_r, server_w = await asyncio.open_connection(host, int(port))
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pump(client_r, server_w, up), pump(server_r, client_w, down))
        for w in (server_w, client_w):
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", a.listen)
    bound = server.sockets[0].getsockname()[1]
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write("%d\n" % bound)
        import os
        os.replace(a.port_file + ".tmp", a.port_file)
    print(bound, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    print("wanproxy %s: %d bytes to the server, %d bytes from it" % (a.to, up.bytes, down.bytes),
          file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
