#!/usr/bin/env bash
# How soon the agent catches up after a server outage (issue 7, "the agent never silently
# stops"): a backup task's agent runs, the server is stopped, a file is written (the pass
# fails and is retried with backoff), and the server is started again on the same port and
# data folder after OUTAGES seconds. Prints, per outage, the time from the server listening
# again to the file being on the server.
#
#   bash bench/agent_retry.sh                  (builds the release binary first)
#   BENCH_CAIRN_BIN=target/debug/cairn OUTAGES="2 30 70" bash bench/agent_retry.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CAIRN=${BENCH_CAIRN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn}
if [[ -z ${BENCH_CAIRN_BIN:-} ]]; then
  (cd "$ROOT" && cargo build --release -p cairn --quiet)
fi
OUTAGES=${OUTAGES:-"2 8 15 30 70"}

WORK=$(mktemp -d)
SERVER_PID=""
AGENT_PID=""
cleanup() {
  [[ -n $AGENT_PID ]] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
  [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

DATA=$WORK/data
export CAIRN_HOME=$WORK/home
mkdir -p "$WORK/docs"

# Starts the server on $1 (127.0.0.1:0 the first time) and waits until it listens.
start_server() {
  : >"$WORK/server.out"
  "$CAIRN" server run --data "$DATA" --listen "$1" >"$WORK/server.out" 2>"$WORK/server.err" &
  SERVER_PID=$!
  URL=""
  for _ in $(seq 600); do
    URL=$(sed -n 's/^listening on //p' "$WORK/server.out" | head -1)
    [[ -n $URL ]] && return
    sleep 0.05
  done
  echo "the server did not start" >&2
  exit 1
}

stop_server() {
  kill "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# Waits until `cairn status --json` shows task t in state $1.
wait_state() {
  until "$CAIRN" status --json | grep -q "\"state\": \"$1\""; do sleep 0.1; done
}

now() { date +%s.%N; }

start_server 127.0.0.1:0
ADDR=${URL#https://}
echo pw | "$CAIRN" server user add alice --password-stdin --data "$DATA" >/dev/null
"$CAIRN" server folder add backup --data "$DATA" >/dev/null
"$CAIRN" server folder grant backup alice --access rw --data "$DATA" >/dev/null
FP=$("$CAIRN" server fingerprint --data "$DATA")
echo pw | "$CAIRN" connect "$URL" --user alice --password-stdin --fingerprint "$FP" \
  --name srv >/dev/null
"$CAIRN" backup add t --local "$WORK/docs" --connection srv --folder backup --computer pc \
  >/dev/null
"$CAIRN" agent --rescan 3600 >"$WORK/agent.out" 2>&1 &
AGENT_PID=$!
wait_state up_to_date

echo "| outage (s) | file on the server after the server's return (s) |"
echo "| ---: | ---: |"
for outage in $OUTAGES; do
  stop_server
  file=offline-$outage.txt
  echo x >"$WORK/docs/$file"
  wait_state error
  sleep "$outage"
  start_server "$ADDR"
  back=$(now)
  until "$CAIRN" ls t | grep -q "$file"; do sleep 0.05; done
  printf '| %s | %.2f |\n' "$outage" "$(echo "$(now) - $back" | bc)"
done
