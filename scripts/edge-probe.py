#!/usr/bin/env python3
"""A hostile client against a running bridge (issue 18): how much memory unauthenticated bodies
cost it, and how long slow-loris sockets are held. Standard library only.

    scripts/edge-probe.py PID HOST:PORT [--bodies N] [--slow N]

PID is the bridge's process id (its RSS is read from /proc). Prints one JSON line.
"""
import json
import socket
import sys
import threading
import time


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def unauthenticated_bodies(addr, n, size=2 * 1024 * 1024):
    """n connections each POSTing a `size` body to /v1/calls without a token, all at once;
    the sockets stay open until the caller closes them."""
    socks = []
    chunk = b"x" * 65536
    def one():
        try:
            s = socket.create_connection(addr, timeout=10)
            s.sendall(
                b"POST /v1/calls HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {size}\r\n\r\n".encode()
            )
            sent = 0
            while sent < size:
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # refused mid-body: what a server that does not buffer does
        else:
            pass
        socks.append(s)
    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return socks


def slow_loris(addr, n, interval=5.0, give_up=120.0):
    """n sockets sending one header byte every `interval` s; returns how long the server
    held them (median and max seconds), capped at `give_up`."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(addr, timeout=10)
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        s.setblocking(False)
        socks.append(s)
    start = time.monotonic()
    next_byte = start + interval
    held = {}
    while len(held) < n and time.monotonic() - start < give_up:
        send = time.monotonic() >= next_byte
        if send:
            next_byte += interval
        for i, s in enumerate(socks):
            if i in held:
                continue
            try:
                if s.recv(1024) == b"":
                    held[i] = time.monotonic() - start
                    continue
            except BlockingIOError:
                pass
            except OSError:
                held[i] = time.monotonic() - start
                continue
            if send:
                try:
                    s.send(b"X")
                except OSError:
                    held[i] = time.monotonic() - start
        time.sleep(0.25)
    times = sorted(held.get(i, give_up) for i in range(n))
    for s in socks:
        s.close()
    return times[len(times) // 2], times[-1]


def main():
    pid = int(sys.argv[1])
    host, port = sys.argv[2].rsplit(":", 1)
    addr = (host, int(port))
    args = sys.argv[3:]
    bodies = int(args[args.index("--bodies") + 1]) if "--bodies" in args else 100
    slow = int(args[args.index("--slow") + 1]) if "--slow" in args else 300
    before = rss_mb(pid)
    socks = unauthenticated_bodies(addr, bodies)
    time.sleep(1.0)
    during = rss_mb(pid)
    for s in socks:
        s.close()
    median, worst = slow_loris(addr, slow)
    print(json.dumps({
        "rss_mb_before": round(before, 1),
        "rss_mb_with_unauthenticated_bodies": round(during, 1),
        "bodies": bodies,
        "slow_sockets": slow,
        "slow_held_s_median": round(median, 1),
        "slow_held_s_max": round(worst, 1),
    }))


if __name__ == "__main__":
    main()
