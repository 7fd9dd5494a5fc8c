#!/usr/bin/env bash
# Server memory with a large folder and many agents listing it (issue 12): one cairn server,
# one folder of BENCH_FILES (1,000,000) empty files backed up by one computer, then
# BENCH_FOLLOWERS (10) clients asking for the folder's whole listing at the same time, as
# agents do on their first pass and after each reconnect, BENCH_ROUNDS (3) times over. The
# server's RSS is sampled every 0.2 s; prints its peak before the listings (after the backup),
# during them, and after them, with each round's wall time. A bounded server peaks at about
# the same RSS whatever the number of followers.
#
#   bash bench/followers.sh
#   BENCH_FILES=100000 BENCH_FOLLOWERS=4 bash bench/followers.sh
#   BENCH_CAIRN_BIN=/path/to/cairn bash bench/followers.sh
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_WORK:-$ROOT/bench/work}/followers
FILES=${BENCH_FILES:-1000000}
FOLLOWERS=${BENCH_FOLLOWERS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
CAIRN=${BENCH_CAIRN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn}
PASSWORD=bench-pw

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }
for v in FILES FOLLOWERS ROUNDS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
command -v curl >/dev/null || die "curl is needed (apt-get install curl)"

SERVER_PID="" SAMPLER_PID=""
cleanup() {
  for p in $SAMPLER_PID $SERVER_PID; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z ${BENCH_CAIRN_BIN:-} ]]; then
  log "building cairn (release)"
  (cd "$ROOT" && cargo build --release -p cairn --quiet)
fi
[[ -x $CAIRN ]] || die "no cairn binary at $CAIRN"

# The tree: FILES empty files, 100 per folder, generated once per count.
TREE=$WORK/tree-$FILES
if [[ ! -f $TREE.stamp ]]; then
  log "generating $FILES empty files in $TREE"
  rm -rf "$TREE"
  python3 - "$TREE" "$FILES" <<'PY'
import os, sys
root, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    d = os.path.join(root, f"{i // 10000:03d}", f"{i // 100 % 100:02d}")
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    open(os.path.join(d, f"f{i:07d}"), "wb").close()
PY
  touch "$TREE.stamp"
fi

rm -rf "$WORK/server" "$WORK/home"
mkdir -p "$WORK/server" "$WORK/home"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$CAIRN" server run --data "$WORK/server/data" --listen "127.0.0.1:$port" \
  </dev/null >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for ((i = 0; i < 300; i++)); do
  kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited (log: $WORK/server.log)"
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.1
done

srv() { "$CAIRN" server "$@" --data "$WORK/server/data" </dev/null; }
{
  printf '%s\n' "$PASSWORD" | "$CAIRN" server user add bench --password-stdin --data "$WORK/server/data"
  srv folder add big
  srv folder grant big bench --access rw
  fp=$(srv fingerprint | awk 'NF { l = $0 } END { print l }')
  printf '%s\n' "$PASSWORD" | CAIRN_HOME=$WORK/home "$CAIRN" connect "https://127.0.0.1:$port" \
    --user bench --password-stdin --fingerprint "$fp" --name srv
  CAIRN_HOME=$WORK/home "$CAIRN" backup add big --local "$TREE" --connection srv --folder big
} >"$WORK/setup.log" 2>&1 || { tail -n 20 "$WORK/setup.log" >&2; die "setup failed (log: $WORK/setup.log)"; }

log "backing up $FILES files"
b0=$(date +%s.%N)
CAIRN_HOME=$WORK/home "$CAIRN" run big </dev/null >"$WORK/backup.log" 2>&1 ||
  { tail -n 20 "$WORK/backup.log" >&2; die "the backup failed"; }
b1=$(date +%s.%N)

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0; }
peak_file=$WORK/peak
sample_peak() { # until stopped: the largest RSS seen, in KiB, written to $peak_file
  local peak=0 now
  while kill -0 "$SERVER_PID" 2>/dev/null; do
    now=$(rss_kib)
    ((now > peak)) && { peak=$now; echo "$peak" >"$peak_file"; }
    sleep 0.2
  done
}
after_backup=$(rss_kib)

token=$(curl -sk "https://127.0.0.1:$port/api/v1/login" -H 'content-type: application/json' \
  -d "{\"user\":\"bench\",\"password\":\"$PASSWORD\"}" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
listing() { # FILE: one whole listing, gzip as the client asks; its size in bytes to FILE
  curl -sk --compressed -H "authorization: Bearer $token" \
    "https://127.0.0.1:$port/api/v1/folders/big/tree?prefix=&deleted=false" -o "$1"
}

echo 0 >"$peak_file"
sample_peak &
SAMPLER_PID=$!
declare -a walls
for ((r = 1; r <= ROUNDS; r++)); do
  t0=$(date +%s.%N)
  pids=()
  for ((f = 1; f <= FOLLOWERS; f++)); do
    listing "$WORK/listing.$f" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || die "a listing failed"; done
  t1=$(date +%s.%N)
  walls+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')")
  for ((f = 1; f <= FOLLOWERS; f++)); do
    n=$(python3 -c 'import json, sys; print(sum(1 for e in json.load(open(sys.argv[1]))["entries"] if "/f" in e["path"]))' "$WORK/listing.$f")
    [[ $n == "$FILES" ]] || die "listing $f of round $r held $n files, not $FILES"
  done
done
sleep 1
kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=""
peak=$(<"$peak_file")
after=$(rss_kib)
size=$(stat -c %s "$WORK/listing.1")
rm -f "$WORK"/listing.*

mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
echo
echo "## Followers: $FOLLOWERS listings of $FILES files at once, $ROUNDS rounds ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo
echo "- cairn: $("$CAIRN" --version)"
echo "- backup of $FILES empty files: $(awk -v a="$b0" -v b="$b1" 'BEGIN { printf "%.2f", b - a }') s"
echo "- one listing: $((size / 1048576)) MiB of JSON"
echo
echo "| measure | value |"
echo "| --- | ---: |"
echo "| server RSS after the backup (MiB) | $(mib "$after_backup") |"
echo "| server peak RSS during the listings (MiB) | $(mib "$peak") |"
echo "| server RSS after the listings (MiB) | $(mib "$after") |"
echo "| wall time of each round (s) | ${walls[*]} |"
