#!/usr/bin/env bash
# Request-size limits under load (issue 6, class 4): the largest commit, presence query and
# upload the server allows, each sent while a second user keeps sending small requests.
# Prints how long each big request took and the worst wait of the small ones (target: < 1 s).
#
#   bash bench/limits.sh            (builds the release binary first)
#   BENCH_CAIRN_BIN=target/release/cairn bash bench/limits.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CAIRN=${BENCH_CAIRN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn}
if [[ -z ${BENCH_CAIRN_BIN:-} ]]; then
  (cd "$ROOT" && cargo build --release -p cairn --quiet)
fi
# Valid chunk ids for the upload case need BLAKE3 in Python (optional).
python3 -c 'import blake3' 2>/dev/null || pip install --quiet blake3 >/dev/null 2>&1 || true

WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

DATA=$WORK/data
"$CAIRN" server run --data "$DATA" --listen 127.0.0.1:0 >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
for _ in $(seq 100); do
  URL=$(sed -n 's/^listening on //p' "$WORK/server.out" | head -1)
  [[ -n $URL ]] && break
  sleep 0.1
done
[[ -n ${URL:-} ]] || { echo "server did not start" >&2; cat "$WORK/server.err" >&2; exit 1; }
admin() { "$CAIRN" server "$@" --data "$DATA" >/dev/null; }
echo big-pw | admin user add big --password-stdin
echo small-pw | admin user add small --password-stdin
admin folder add bench --keep-versions 1
admin folder add other
admin folder grant bench big --access rw
admin folder grant other small --access rw

echo "cairn $("$CAIRN" --version 2>/dev/null | head -1), $(nproc) cores, $(date -u +%Y-%m-%d)"
python3 "$ROOT/bench/limits.py" "$URL" big big-pw small small-pw
rss=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
echo "server peak RSS: $((rss / 1024)) MiB"
