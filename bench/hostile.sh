#!/usr/bin/env bash
# Strangers benchmark (issue 6, class 3): what a login flood and idle connections cost a
# release cairn server with its default limits. Measures
#   (a) the server's peak RSS during 128 concurrent bogus logins (target: under 300 MiB);
#   (b) the latency of a legitimate request (login + list folders) while 1,000 idle TLS
#       connections and a flood of 128 concurrent bogus logins are open (target: under 1 s).
# Load comes from bench/hostile.py; each client binds its own 127.x.y.z source address, so
# the server sees many strangers, not one. See bench/README.md.
#
#   bash bench/hostile.sh
#   HOSTILE_CAIRN_BIN=target/release/cairn bash bench/hostile.sh
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${HOSTILE_WORK:-$ROOT/bench/work}/hostile   # recreated on every run
RSS_SECS=${HOSTILE_RSS_SECS:-15}
IDLE=${HOSTILE_IDLE:-1000}
FLOOD=${HOSTILE_FLOOD:-128}
REQUESTS=${HOSTILE_REQUESTS:-20}
STRICT=${HOSTILE_STRICT:-0}
# Extra `server run` options, e.g. HOSTILE_SERVER_ARGS="--login-concurrency 1"; none by default.
read -r -a SERVER_ARGS <<<"${HOSTILE_SERVER_ARGS:-}"
CAIRN=${HOSTILE_CAIRN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn}
RESULTS=$ROOT/bench/work/hostile-results.md
PASSWORD=bench-password

log() { printf '==> %s\n' "$*"; }
die() { printf 'hostile bench: error: %s\n' "$*" >&2; exit 1; }

for v in RSS_SECS IDLE FLOOD REQUESTS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "HOSTILE_$v must be a positive integer, got '${!v}'"
done
command -v python3 >/dev/null || die "python3 is needed"

# 1,000 idle connections, the flood and the server's own files need more than the usual
# 1,024 descriptors: on both sides of loopback, since client and server share this shell.
need=$((2 * IDLE + 4 * FLOOD + 512))
if (( $(ulimit -n) < need )); then
  ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
(( $(ulimit -n) >= need )) || die "open-file limit $(ulimit -n) is under $need and cannot be raised (ulimit -Hn: $(ulimit -Hn))"
log "open-file limit: $(ulimit -n)"

if [[ -z ${HOSTILE_CAIRN_BIN:-} ]]; then
  log "building cairn (release)"
  (cd "$ROOT" && cargo build --release -p cairn --quiet)
fi
[[ -x $CAIRN ]] || die "$CAIRN is not executable"
"$CAIRN" server run --help | grep -q -- --login-concurrency || die "$CAIRN has no login limits (stale binary?)"

rm -rf "$WORK"
mkdir -p "$WORK"
SERVER_PID=
cleanup() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Default limits: the point is what a stock server withstands.
"$CAIRN" server run --data "$WORK/data" --listen "127.0.0.1:$PORT" ${SERVER_ARGS[@]+"${SERVER_ARGS[@]}"} </dev/null >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 600); do
  grep -q "listening on" "$WORK/server.log" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited: $(tail -5 "$WORK/server.log")"
  sleep 0.1
done
grep -q "listening on" "$WORK/server.log" || die "the server did not start"
printf '%s\n' "$PASSWORD" | "$CAIRN" server user add bench --password-stdin --data "$WORK/data" >/dev/null
"$CAIRN" server folder add share --data "$WORK/data" >/dev/null
"$CAIRN" server folder grant share bench --access rw --data "$WORK/data" >/dev/null
log "server pid $SERVER_PID on port $PORT, RSS at start $(awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status") KiB"

log "(a) $FLOOD concurrent bogus logins for $RSS_SECS s"
python3 "$ROOT/bench/hostile.py" rss --port "$PORT" --pid "$SERVER_PID" --threads "$FLOOD" \
  --secs "$RSS_SECS" >"$WORK/rss.json"
cat "$WORK/rss.json"

# The flood of (a) left its addresses throttled; (b) floods from other addresses, so restart
# nothing: a stranger's history is part of a real server's state too.
log "(b) $IDLE idle TLS connections + $FLOOD concurrent bogus logins; $REQUESTS legitimate requests"
python3 "$ROOT/bench/hostile.py" latency --port "$PORT" --pid "$SERVER_PID" --user bench \
  --password "$PASSWORD" --idle "$IDLE" --threads "$FLOOD" --requests "$REQUESTS" \
  --idle-wait 35 >"$WORK/latency.json"
cat "$WORK/latency.json"
kill -0 "$SERVER_PID" 2>/dev/null || die "the server died: $(tail -5 "$WORK/server.log")"

python3 - "$WORK/rss.json" "$WORK/latency.json" "$RESULTS" "$STRICT" "$("$CAIRN" --version)" <<'EOF'
import json, os, platform, sys, time
rss = json.load(open(sys.argv[1]))
lat = json.load(open(sys.argv[2]))
out, strict, version = sys.argv[3], sys.argv[4] == "1", sys.argv[5]
mib = lambda kib: kib / 1024
peak = max(rss["peak_sampled_kib"], rss["vmhwm_kib"])
ok_a = mib(peak) < 300
ok_b = lat["max_ms"] < 1000
def answers(d):
    return ", ".join(f"{k}: {v}" for k, v in sorted(d.items()))
cpus = os.cpu_count()
mem = int(open("/proc/meminfo").readline().split()[1]) / 1024 / 1024
lines = [
    f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
    f"- machine: {cpus} CPUs, {mem:.1f} GiB RAM, Linux {platform.release()}",
    f"- {version}, release build, " + (f"server options: {os.environ.get('HOSTILE_SERVER_ARGS')}" if os.environ.get('HOSTILE_SERVER_ARGS') else "default limits"),
    "",
    "| measurement | figure | target | |",
    "| --- | ---: | ---: | --- |",
    f"| (a) server peak RSS, {rss['threads']} concurrent bogus logins for {rss['secs']} s | {mib(peak):.1f} MiB (at start {mib(rss['baseline_kib']):.1f}) | < 300 MiB | {'met' if ok_a else 'MISSED'} |",
    f"| (b) legitimate login + list folders from the user's usual address, max of {len(lat['latency_ms'])} | {lat['max_ms']:.0f} ms | < 1000 ms | {'met' if ok_b else 'MISSED'} |",
    f"| (b) same, p50 / p95 | {lat['p50_ms']:.0f} / {lat['p95_ms']:.0f} ms | | |",
    f"| (b) same from an address new to the server (a new one each time), p50 / p95 / max | {lat['new_p50_ms']:.0f} / {lat['new_p95_ms']:.0f} / {lat['new_max_ms']:.0f} ms | | |",
    f"| (b) same with no load, p50 of {len(lat['quiet_ms'])} | {sorted(lat['quiet_ms'])[len(lat['quiet_ms']) // 2]:.0f} ms | | |",
    "",
    f"- (a) answers to the flood: {answers(rss['answers'])}",
    f"- (b) idle connections: {lat['idle_opened']} opened in {lat['idle_open_secs']} s ({lat['idle_failed']} failed), "
    f"{lat['idle_open_at_start']} open when timing began, {lat['idle_open_at_end']} at its end, "
    f"{lat['idle_closed_after_wait']} closed by the server {lat['idle_wait_secs']:.0f} s later",
    f"- (b) answers to the flood ({lat['flood_threads']} threads, {lat['secs']} s): {answers(lat['flood_answers'])}; "
    f"the legitimate client waited out {lat['legit_429_waits']} 429s at its usual address, "
    f"{lat['new_429_waits']} at new ones",
    f"- server peak RSS over the whole run: {mib(lat['server_vmhwm_kib']):.1f} MiB",
]
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
print()
print(text)
if strict and not (ok_a and ok_b):
    sys.exit(1)
EOF
log "results in $RESULTS"
