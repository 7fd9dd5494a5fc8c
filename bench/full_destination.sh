#!/usr/bin/env bash
# How long a cloud task takes to give up on a file its destination will not take (issue 8):
# a task on a mounted folder (the `fs` provider) sends a 2 MB file under a file-size limit of
# 256 KiB (`ulimit -f 512`, SIGXFSZ ignored, so the write fails with EFBIG as on a full disk).
# Prints the wall time of each of RUNS passes and the pass's message.
#
#   bash bench/full_destination.sh                  (builds the release binary first)
#   BENCH_CAIRN_BIN=target/debug/cairn RUNS=3 bash bench/full_destination.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CAIRN=${BENCH_CAIRN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn}
if [[ -z ${BENCH_CAIRN_BIN:-} ]]; then
  (cd "$ROOT" && cargo build --release -p cairn --quiet)
fi
RUNS=${RUNS:-3}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export CAIRN_HOME=$WORK/home
mkdir -p "$WORK/share" "$WORK/docs/full"
"$CAIRN" cloud connect r --provider fs --option "root=$WORK/share" >/dev/null
"$CAIRN" cloud add t --connection r --local "$WORK/docs" --remote faults --computer pc >/dev/null
head -c 2000000 /dev/urandom >"$WORK/docs/full/huge.bin"

for run in $(seq "$RUNS"); do
  start=$(date +%s.%N)
  said=$(sh -c "trap '' XFSZ; ulimit -f 512; exec \"$CAIRN\" run t" 2>&1 || true)
  end=$(date +%s.%N)
  printf 'run %s: %.2f s\n' "$run" "$(echo "$end - $start" | bc)"
done
echo "last message: $(echo "$said" | grep huge.bin | head -1)"
