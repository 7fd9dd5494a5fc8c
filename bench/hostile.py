#!/usr/bin/env python3
"""Load generator and meter for bench/hostile.sh (issue 6, class 3).

Every client binds its own loopback source address (127.x.y.z), so the server sees many
strangers instead of one, as it would on the internet:

  rss      128 concurrent bogus logins for a while; samples the server's RSS.
  latency  1,000 idle TLS connections plus a flood of bogus logins (a separate process); meanwhile
           a legitimate client logs in and lists its folders, again and again, and is timed.
  flood    (internal) the bogus-login flood, for `latency`.

Each mode prints one JSON object on stdout.
"""

import argparse
import http.client
import json
import math
import os
import random
import socket
import ssl
import subprocess
import sys
import threading
import time


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # self-signed; this measures load, not trust
    return ctx


CTX = tls_context()


def source(net, i):
    """The i-th source address in 127.<net>.0.0/16."""
    return f"127.{net}.{(i // 250) % 250}.{i % 250 + 1}"


def post_login(port, src, user, password):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=CTX, timeout=120,
                                    source_address=(src, 0))
    try:
        body = json.dumps({"user": user, "password": password})
        c.request("POST", "/api/v1/login", body=body,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        return r.status, r.getheader("Retry-After"), data, c
    except Exception:
        c.close()
        raise


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Flood:
    """`threads` bogus-login loops, thread i from its own source address in 127.<net>/16."""

    def __init__(self, port, threads, net):
        self.port, self.threads, self.net = port, threads, net
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.counts = {}
        self.start_barrier = threading.Barrier(threads + 1)

    def count(self, key):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    def worker(self, i):
        src = source(self.net, i)
        self.start_barrier.wait()
        while not self.stop.is_set():
            name = f"nobody-{random.getrandbits(48):012x}"
            try:
                status, _, _, c = post_login(self.port, src, name, "guess")
                c.close()
                self.count(str(status))
            except Exception:
                # Refused at the per-address cap, or closed: costs the server nothing more.
                self.count("closed")
                time.sleep(0.05)

    def run(self):
        ts = [threading.Thread(target=self.worker, args=(i,), daemon=True)
              for i in range(self.threads)]
        for t in ts:
            t.start()
        self.start_barrier.wait()
        return ts


def cmd_rss(a):
    base = rss_kib(a.pid)
    flood = Flood(a.port, a.threads, 1)
    t0 = time.time()
    ts = flood.run()
    peak = base
    while time.time() - t0 < a.secs:
        peak = max(peak, rss_kib(a.pid))
        time.sleep(0.02)
    flood.stop.set()
    for t in ts:
        t.join(150)
    elapsed = time.time() - t0
    print(json.dumps({
        "baseline_kib": base,
        "peak_sampled_kib": peak,
        "vmhwm_kib": rss_kib(a.pid, "VmHWM"),
        "answers": flood.counts,
        "secs": round(elapsed, 1),
        "threads": a.threads,
    }))


def cmd_flood(a):
    flood = Flood(a.port, a.threads, a.net)
    ts = flood.run()
    sys.stdout.write("started\n")
    sys.stdout.flush()
    sys.stdin.readline()  # runs until told to stop
    flood.stop.set()
    for t in ts:
        t.join(150)
    print(json.dumps(flood.counts))


def open_idle(port, n, per_source):
    """n TLS connections with finished handshakes, per_source per source address."""
    conns, failed = [], 0
    for i in range(n):
        src = source(2, i // per_source)
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=60, source_address=(src, 0))
            conns.append(CTX.wrap_socket(s))
        except Exception:
            failed += 1
    return conns, failed


def still_open(conns):
    n = 0
    for s in conns:
        s.setblocking(False)
        try:
            n += 0 if s.recv(1) == b"" else 1
        except (ssl.SSLWantReadError, BlockingIOError):
            n += 1
        except Exception:
            pass
    return n


def legit_request(port, user, password, src):
    """Login + list folders from `src`, as the client does it: a 429 is waited out
    (Retry-After) and counts in the latency."""
    waited_429 = 0
    t0 = time.perf_counter()
    while True:
        status, retry, data, c = post_login(port, src, user, password)
        if status != 429:
            break
        c.close()
        waited_429 += 1
        time.sleep(int(retry or "1"))
    if status != 200:
        raise RuntimeError(f"legitimate login answered {status}: {data[:200]!r}")
    token = json.loads(data)["token"]
    c.request("GET", "/api/v1/folders", headers={"Authorization": f"Bearer {token}"})
    r = c.getresponse()
    body = r.read()
    c.close()
    if r.status != 200:
        raise RuntimeError(f"folders answered {r.status}: {body[:200]!r}")
    return time.perf_counter() - t0, waited_429


def pct(xs, p):
    """Nearest-rank percentile."""
    xs = sorted(xs)
    return xs[max(0, math.ceil(p / 100 * len(xs)) - 1)]


KNOWN = source(4, 0)  # the user's usual address: logs in before the flood starts


def new_address(i):
    """A different address for each request: the user on networks the server never saw."""
    return source(5, i)


def cmd_latency(a):
    quiet = [legit_request(a.port, a.user, a.password, KNOWN)[0] for _ in range(5)]
    t0 = time.time()
    conns, failed = open_idle(a.port, a.idle, a.per_source)
    open_secs = time.time() - t0
    flood = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "flood", "--port", str(a.port),
         "--threads", str(a.threads), "--net", "3"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert flood.stdout.readline().strip() == "started"
    time.sleep(a.warmup)
    open_at_start = still_open(conns)
    lat, waits, lat_new, waits_new = [], 0, [], 0
    for i in range(a.requests):
        secs, w = legit_request(a.port, a.user, a.password, KNOWN)
        lat.append(secs)
        waits += w
        secs, w = legit_request(a.port, a.user, a.password, new_address(i))
        lat_new.append(secs)
        waits_new += w
        time.sleep(0.1)
    open_at_end = still_open(conns)
    flood.stdin.write("stop\n")
    flood.stdin.flush()
    flood_counts = json.loads(flood.stdout.readline())
    flood.wait()
    measured_secs = time.time() - t0
    closed_later = None
    if a.idle_wait:
        time.sleep(a.idle_wait)
        closed_later = len(conns) - still_open(conns)
    print(json.dumps({
        "quiet_ms": [round(x * 1000, 1) for x in quiet],
        "idle_requested": a.idle,
        "idle_opened": len(conns),
        "idle_failed": failed,
        "idle_open_secs": round(open_secs, 1),
        "idle_open_at_start": open_at_start,
        "idle_open_at_end": open_at_end,
        "idle_closed_after_wait": closed_later,
        "idle_wait_secs": a.idle_wait,
        "latency_ms": [round(x * 1000, 1) for x in lat],
        "p50_ms": round(pct(lat, 50) * 1000, 1),
        "p95_ms": round(pct(lat, 95) * 1000, 1),
        "max_ms": round(max(lat) * 1000, 1),
        "legit_429_waits": waits,
        "new_latency_ms": [round(x * 1000, 1) for x in lat_new],
        "new_p50_ms": round(pct(lat_new, 50) * 1000, 1),
        "new_p95_ms": round(pct(lat_new, 95) * 1000, 1),
        "new_max_ms": round(max(lat_new) * 1000, 1),
        "new_429_waits": waits_new,
        "flood_answers": flood_counts,
        "flood_threads": a.threads,
        "secs": round(measured_secs, 1),
        "server_vmhwm_kib": rss_kib(a.pid, "VmHWM"),
    }))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("rss")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--pid", type=int, required=True)
    r.add_argument("--threads", type=int, default=128)
    r.add_argument("--secs", type=float, default=15)
    f = sub.add_parser("flood")
    f.add_argument("--port", type=int, required=True)
    f.add_argument("--threads", type=int, default=128)
    f.add_argument("--net", type=int, default=3)
    lt = sub.add_parser("latency")
    lt.add_argument("--port", type=int, required=True)
    lt.add_argument("--pid", type=int, required=True)
    lt.add_argument("--user", required=True)
    lt.add_argument("--password", required=True)
    lt.add_argument("--idle", type=int, default=1000)
    lt.add_argument("--per-source", type=int, default=50)
    lt.add_argument("--threads", type=int, default=128)
    lt.add_argument("--warmup", type=float, default=3)
    lt.add_argument("--requests", type=int, default=20)
    lt.add_argument("--idle-wait", type=float, default=0)
    a = p.parse_args()
    {"rss": cmd_rss, "flood": cmd_flood, "latency": cmd_latency}[a.mode](a)


if __name__ == "__main__":
    main()
