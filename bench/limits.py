#!/usr/bin/env python3
"""The largest requests the server allows, each sent while another user keeps asking small
questions: how long the big request takes, and how long the small ones wait meanwhile.

Run by bench/limits.sh, which starts the server and passes: URL USER PASSWORD USER2 PASSWORD2.
"""
import hashlib
import http.client
import json
import os
import ssl
import struct
import sys
import threading
import time
import urllib.parse

try:
    from blake3 import blake3  # type: ignore
except ImportError:  # the server re-hashes with BLAKE3; random ids are what a hostile client sends
    blake3 = None

URL, USER, PW, USER2, PW2 = sys.argv[1:6]
# cairn_protocol::MAX_COMMIT_CHANGES and MAX_COMMIT_CHUNKS
MAX_COMMIT_CHANGES = 25_000
MAX_COMMIT_CHUNKS = 60_000
u = urllib.parse.urlparse(URL)
CTX = ssl._create_unverified_context()


def conn():
    return http.client.HTTPSConnection(u.hostname, u.port, context=CTX, timeout=600)


def request(c, method, path, body=None, token=None, ctype="application/json"):
    headers = {"content-type": ctype}
    if token:
        headers["authorization"] = "Bearer " + token
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    return r.status, data


def login(user, pw):
    c = conn()
    status, data = request(c, "POST", "/api/v1/login", json.dumps({"user": user, "password": pw}))
    assert status == 200, (status, data)
    return json.loads(data)["token"]


class Prober(threading.Thread):
    """Another user's small request, over and over; latencies recorded while `on` is set."""

    def __init__(self, token):
        super().__init__(daemon=True)
        self.token, self.on, self.stop, self.lat = token, False, False, []

    def run(self):
        c = conn()
        while not self.stop:
            t = time.monotonic()
            status, _ = request(c, "GET", "/api/v1/folders", token=self.token)
            dt = time.monotonic() - t
            if self.on:
                self.lat.append(dt)
            time.sleep(0.02)


def outcome(body):
    """A commit's results by status ("accepted", "refused", ...), else empty."""
    try:
        results = json.loads(body)["results"]
    except (ValueError, KeyError, TypeError):
        return ""
    counts = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return ",".join(f"{n} {s}" for s, n in sorted(counts.items()))


def measure(name, prober, send):
    prober.lat = []
    prober.on = True
    t = time.monotonic()
    status, body = send()
    took = time.monotonic() - t
    prober.on = False
    lat = sorted(prober.lat) or [0.0]
    print(f"{name:<56} {took:7.2f} s  HTTP {status} {outcome(body):<12} other user: {len(lat)} requests, "
          f"p50 {lat[len(lat) // 2] * 1000:6.1f} ms, max {lat[-1] * 1000:6.1f} ms", flush=True)
    return took, lat[-1], body


def fake_id(i):
    return hashlib.sha256(b"chunk %d" % i).hexdigest()


def main():
    tok = login(USER, PW)
    tok2 = login(USER2, PW2)
    prober = Prober(tok2)
    prober.start()
    time.sleep(0.5)
    big = conn()
    results = []

    # 1. The most changes one commit may carry (MAX_COMMIT_CHANGES), each a new folder.
    n = MAX_COMMIT_CHANGES
    changes = [{"path": f"d{i:06}", "base": None,
                "entry": {"kind": "dir", "size": 0, "mtime_ns": 1, "mode": 493, "hash": None}}
               for i in range(n)]
    body = json.dumps({"changes": changes})
    results.append(measure(f"commit: {n} new folders ({len(body) >> 20} MiB)", prober,
                           lambda: request(big, "POST", "/api/v1/folders/bench/commit", body, tok)))
    seqs = [r["seq"] for r in json.loads(results[-1][2])["results"]]

    # 1b. As many moves: each writes two versions, the most rows a commit can write.
    moves = [{"path": f"m{i:06}", "base": None, "moved_from": {"path": f"d{i:06}", "base": s},
              "entry": {"kind": "dir", "size": 0, "mtime_ns": 1, "mode": 493, "hash": None}}
             for i, s in enumerate(seqs)]
    body = json.dumps({"changes": moves})
    results.append(measure(f"commit: {n} moves of folders ({len(body) >> 20} MiB)", prober,
                           lambda: request(big, "POST", "/api/v1/folders/bench/commit", body, tok)))

    # 2. One file naming the most chunks a commit may carry (MAX_COMMIT_CHUNKS), none present.
    k = MAX_COMMIT_CHUNKS
    chunks = [{"id": fake_id(i), "len": 1} for i in range(k)]
    change = {"path": "huge", "base": None, "chunks": chunks,
              "entry": {"kind": "file", "size": k, "mtime_ns": 1, "mode": 420, "hash": "0" * 64}}
    body = json.dumps({"changes": [change]})
    results.append(measure(f"commit: one file naming {k} missing chunks ({len(body) >> 20} MiB)",
                           prober,
                           lambda: request(big, "POST", "/api/v1/folders/bench/commit", body, tok)))

    # 3. Which of MAX_MISSING_IDS chunks are missing.
    ids = [fake_id(i) for i in range(100_000)]
    body = json.dumps({"chunks": ids})
    results.append(measure("missing: 100000 chunk ids", prober,
                           lambda: request(big, "POST", "/api/v1/folders/bench/chunks/missing",
                                           body, tok)))

    # 4. The most frames one upload may carry, each a tiny chunk (valid ids when blake3 is
    # installed, so every one is registered; otherwise the server refuses the first bad one).
    frames = 10_000
    parts = []
    for i in range(frames):
        data = b"%08d" % i
        cid = blake3(data).digest() if blake3 else hashlib.sha256(data).digest()
        parts.append(cid + struct.pack(">I", len(data)) + data)
    body = b"".join(parts)
    results.append(measure(f"upload: {frames} tiny chunks ({len(body) >> 20} MiB)", prober,
                           lambda: request(big, "POST", "/api/v1/folders/bench/chunks", body, tok,
                                           "application/octet-stream")))
    # 5. Over the frame limit: refused before any registration.
    body = b"".join(parts) + b"".join(parts[:10])
    results.append(measure(f"upload: {frames + 10} tiny chunks (over the limit)", prober,
                           lambda: request(big, "POST", "/api/v1/folders/bench/chunks", body, tok,
                                           "application/octet-stream")))
    # 6. One file naming the most chunks a commit may carry, every one present and the
    # uploader's own: all checked, all referenced (the heaviest commit under the write lock).
    if blake3:
        k = MAX_COMMIT_CHUNKS
        ids = []
        for start in range(0, k, frames):
            parts = []
            for i in range(start, min(k, start + frames)):
                data = b"%08d" % i
                cid = blake3(data).digest()
                ids.append(cid.hex())
                parts.append(cid + struct.pack(">I", len(data)) + data)
            status, text = request(big, "POST", "/api/v1/folders/bench/chunks", b"".join(parts),
                                   tok, "application/octet-stream")
            assert status == 200, (status, text)
        change = {"path": "present", "base": None,
                  "chunks": [{"id": c, "len": 8} for c in ids],
                  "entry": {"kind": "file", "size": 8 * k, "mtime_ns": 1, "mode": 420,
                            "hash": "0" * 64}}
        body = json.dumps({"changes": [change]})
        results.append(measure(f"commit: one file of {k} present chunks ({len(body) >> 20} MiB)",
                               prober,
                               lambda: request(big, "POST", "/api/v1/folders/bench/commit", body,
                                               tok)))
        seq = json.loads(results[-1][2])["results"][0]["seq"]
        # 6b. Moving it: the server copies all its chunk references.
        change = dict(change, path="present-moved", chunks=[],
                      moved_from={"path": "present", "base": seq})
        body = json.dumps({"changes": [change]})
        results.append(measure(f"commit: a move of that file ({len(body)} bytes)", prober,
                               lambda: request(big, "POST", "/api/v1/folders/bench/commit", body,
                                               tok)))
    # 7. One chunk reference over the limit: refused before any lookup.
    chunks = [{"id": fake_id(i), "len": 1} for i in range(MAX_COMMIT_CHUNKS + 1)]
    change = {"path": "over", "base": None, "chunks": chunks,
              "entry": {"kind": "file", "size": len(chunks), "mtime_ns": 1, "mode": 420,
                        "hash": "0" * 64}}
    body = json.dumps({"changes": [change]})
    results.append(measure(f"commit: one file naming {len(chunks)} chunks (over the limit)",
                           prober,
                           lambda: request(big, "POST", "/api/v1/folders/bench/commit", body, tok)))
    prober.stop = True
    worst = max(r[1] for r in results)
    print(f"worst wait of the other user's small request: {worst * 1000:.0f} ms (target: under 1000 ms)")


if __name__ == "__main__":
    main()
