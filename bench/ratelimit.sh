#!/usr/bin/env bash
# Rate limits (issue 7): a backup of incompressible data and its restore, without a limit and
# with `cairn connect --limit-upload/--limit-download`, against rsync's --bwlimit in the same
# run. Prints each transfer's time and effective rate, and the ratio to the limit.
#
#   bash bench/ratelimit.sh                      (builds the release binary first)
#   BENCH_CAIRN_BIN=target/release/cairn BENCH_MB=64 BENCH_LIMIT_MB=8 bash bench/ratelimit.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CAIRN=${BENCH_CAIRN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn}
MB=${BENCH_MB:-64}
LIMIT_MB=${BENCH_LIMIT_MB:-8}
if [[ -z ${BENCH_CAIRN_BIN:-} ]]; then
  (cd "$ROOT" && cargo build --release -p cairn --quiet)
fi

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
echo pw | "$CAIRN" server user add bench --password-stdin --data "$DATA" >/dev/null
FP=$("$CAIRN" server fingerprint --data "$DATA")


now() { date +%s.%N; }
report() { # name seconds limit_bytes_per_sec
  awk -v n="$1" -v s="$2" -v mb="$MB" -v l="$3" 'BEGIN {
    rate = mb / s
    printf "%-44s %7.2f s  %7.1f MiB/s", n, s, rate
    if (l > 0) printf "  (limit %.1f MiB/s: %.2fx)", l / 1048576, rate * 1048576 / l
    printf "\n"
  }'
}

run_cairn() { # label upload_limit download_limit
  local home=$WORK/home-$1 up=$2 down=$3 src=$WORK/src-$1
  # Fresh random data per run: content the server already holds would not be sent at all.
  mkdir -p "$home" "$WORK/restore-$1" "$src"
  head -c $((MB << 20)) /dev/urandom >"$src/blob.bin"
  export CAIRN_HOME=$home
  echo pw | "$CAIRN" connect "$URL" --user bench --password-stdin --fingerprint "$FP" --name srv \
    --limit-upload "$up" --limit-download "$down" >/dev/null
  "$CAIRN" backup add "t" --local "$src" --connection srv --folder bench --computer "pc-$1" >/dev/null
  local t0 t1
  t0=$(now); "$CAIRN" run t --once >/dev/null; t1=$(now)
  report "cairn backup, upload limit $up" "$(echo "$t1 - $t0" | bc)" "$(limit_bytes "$up")"
  t0=$(now); "$CAIRN" restore t --to "$WORK/restore-$1" >/dev/null; t1=$(now)
  report "cairn restore, download limit $down" "$(echo "$t1 - $t0" | bc)" "$(limit_bytes "$down")"
  cmp -s "$src/blob.bin" "$(find "$WORK/restore-$1" -name blob.bin | head -1)" \
    || { echo "restored content differs" >&2; exit 1; }
}

limit_bytes() { case $1 in none) echo 0 ;; *M) echo $((${1%M} << 20)) ;; esac; }

"$CAIRN" server folder add bench --data "$DATA" >/dev/null
"$CAIRN" server folder grant bench bench --access rw --data "$DATA" >/dev/null
echo "cairn $("$CAIRN" --version | head -1), $(nproc) cores, $(date -u +%Y-%m-%d), ${MB} MiB of random data"
run_cairn free none none
run_cairn limited "${LIMIT_MB}M" "${LIMIT_MB}M"

if ! command -v rsync >/dev/null && [[ $(id -u) == 0 ]]; then
  (apt-get update -qq && apt-get install -y -qq rsync) >/dev/null 2>&1 || true
fi
if ! command -v rsync >/dev/null; then
  echo "rsync is not installed (and could not be): no peer line"
else
  t0=$(now); rsync -a --bwlimit=$((LIMIT_MB * 1024)) "$WORK/src-free/" "$WORK/rsync-dst/"; t1=$(now)
  report "rsync --bwlimit ${LIMIT_MB}M (local copy)" "$(echo "$t1 - $t0" | bc)" $((LIMIT_MB << 20))
fi
