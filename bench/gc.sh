#!/usr/bin/env bash
# gc and check benchmark: a server holding one backup of BENCH_SMALL_FILES small files
# (1-16 KiB, the same seeded data as bench/backup.sh's scenario (b)), then, with the server
# stopped, times:
#   check          `cairn server check` over every chunk row and object
#   gc, kept       a gc run that collects nothing (scans the chunk table and the store)
#   gc, collect    after the folder is deleted, the gc run that collects every chunk
# The backup itself is timed too (the same figure as backup.sh's (b) row for cairn).
#
# Then churn (issue 12's space target): a copy of the tree is backed up into a folder that keeps
# one version, and BENCH_CHURN_ROUNDS times a seeded 30 % of its files get new contents and are
# backed up again. gc (which repacks packs with too much dead space) runs with the server
# stopped, and the chunk store's size is set against the retained data (the tree as it ends).
# restic does the same churn into a local repository with `forget --keep-last 1 --prune`
# (its default: at most 5 % unused space) for comparison. Target: cairn's store at most 1.10x
# the retained data.
#
#   bash bench/gc.sh
#   BENCH_SMALL_FILES=2000 BENCH_CAIRN_BIN=target/release/cairn bash bench/gc.sh
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_WORK:-$ROOT/bench/work}
SMALL_FILES=${BENCH_SMALL_FILES:-20000}
CHURN_ROUNDS=${BENCH_CHURN_ROUNDS:-3}
CAIRN=${BENCH_CAIRN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn}
DATA=$WORK/gc-data
ST=$WORK/gc-state
PASSWORD=bench

log() { printf '==> %s\n' "$*"; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }
[[ $SMALL_FILES =~ ^[1-9][0-9]*$ ]] || die "BENCH_SMALL_FILES must be a positive integer, got '$SMALL_FILES'"
[[ $CHURN_ROUNDS =~ ^[0-9]+$ ]] || die "BENCH_CHURN_ROUNDS must be a whole number, got '$CHURN_ROUNDS'"

SERVER_PID=""
cleanup() {
  [[ -z $SERVER_PID ]] || { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z ${BENCH_CAIRN_BIN:-} ]]; then
  log "building cairn (release)"
  (cd "$ROOT" && cargo build --release -p cairn --quiet)
fi
[[ -x $CAIRN ]] || die "no cairn binary at $CAIRN"

stamp="gc-v1 small_files=$SMALL_FILES"
if [[ ! -f $DATA/.stamp || $(<"$DATA/.stamp") != "$stamp" ]]; then
  log "generating $SMALL_FILES small files in $DATA"
  rm -rf "$DATA"
  mkdir -p "$DATA/small"
  python3 - "$DATA/small" "$SMALL_FILES" <<'PY'
import os, random, sys
root, count = sys.argv[1], int(sys.argv[2])
rng = random.Random(20240601)
for i in range(count):
    d = os.path.join(root, f"{i // 1000:03d}", f"{i // 100 % 10:02d}")
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}.bin"), "wb") as f:
        f.write(rng.randbytes(rng.randint(1024, 16384)))
PY
  printf '%s\n' "$stamp" >"$DATA/.stamp"
fi

# Seconds a command takes, its output to LOG.
timed() { # LOG CMD...
  local log=$1 t0 t1
  shift
  t0=$(date +%s.%N)
  "$@" >"$log" 2>&1 || { tail -n 20 "$log" >&2; die "$* failed (log: $log)"; }
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}

# Starts a server on a fresh $ST with user bench, folder backup (FOLDER_ARGS added to its
# `folder add`) and a client backup task `bench` over LOCAL.
start_server() { # LOCAL [FOLDER_ARGS...]
  local local_dir=$1 port i fp
  shift
  rm -rf "$ST"
  mkdir -p "$ST/server" "$ST/client"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$CAIRN" server run --data "$ST/server" --listen "127.0.0.1:$port" </dev/null >"$ST/server.log" 2>&1 &
  SERVER_PID=$!
  for ((i = 0; i < 300; i++)); do
    kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited (log: $ST/server.log)"
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
  done
  {
    printf '%s\n' "$PASSWORD" | "$CAIRN" server user add bench --password-stdin --data "$ST/server"
    "$CAIRN" server folder add backup "$@" --data "$ST/server"
    "$CAIRN" server folder grant backup bench --access rw --data "$ST/server"
    fp=$("$CAIRN" server fingerprint --data "$ST/server" | awk 'NF { l = $0 } END { print l }')
    printf '%s\n' "$PASSWORD" | CAIRN_HOME=$ST/client "$CAIRN" connect "https://127.0.0.1:$port" \
      --user bench --password-stdin --fingerprint "$fp" --name srv
    CAIRN_HOME=$ST/client "$CAIRN" backup add bench --local "$local_dir" --connection srv --folder backup
  } </dev/null >"$ST/setup.log" 2>&1 || { tail -n 20 "$ST/setup.log" >&2; die "setup failed (log: $ST/setup.log)"; }
}

stop_server() {
  kill "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

start_server "$DATA/small"

backup=$(timed "$ST/backup.log" env "CAIRN_HOME=$ST/client" "$CAIRN" run bench --once)
stop_server

check=$(timed "$ST/check.log" "$CAIRN" server check --data "$ST/server")
kept=$(timed "$ST/gc-kept.log" "$CAIRN" server gc --data "$ST/server")
"$CAIRN" server folder remove backup --confirm backup --data "$ST/server" </dev/null >>"$ST/setup.log" 2>&1
collect=$(timed "$ST/gc-collect.log" "$CAIRN" server gc --data "$ST/server")
grep -q "removed $SMALL_FILES chunks" "$ST/gc-collect.log" ||
  die "the collecting gc run did not remove $SMALL_FILES chunks: $(cat "$ST/gc-collect.log")"

printf '| step | wall s |\n| --- | ---: |\n'
printf '| first backup, %s small files | %s |\n' "$SMALL_FILES" "$backup"
printf '| check | %s |\n' "$check"
printf '| gc, nothing to collect | %s |\n' "$kept"
printf '| gc, collects %s chunks | %s |\n' "$SMALL_FILES" "$collect"
log "gc: $(cat "$ST/gc-collect.log")"
rm -rf "$ST"

(( CHURN_ROUNDS > 0 )) || exit 0
source "$ROOT/bench/gc_churn.sh"
