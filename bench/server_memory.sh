#!/usr/bin/env bash
# Server memory under a long mixed session (issue 12): one cairn server, three computers taking
# turns at a mix of work for BENCH_MINUTES, the server's RSS sampled every BENCH_SAMPLE
# seconds into a CSV, then a minute idle. Each round:
#   - large: computer A backs up 4 files of BENCH_LARGE_MB MiB with new contents (a full upload
#     in 64 MiB requests, four transfers at once);
#   - small: computer B gives 10 % of BENCH_SMALL_FILES small files new contents and backs up;
#   - drive: computer C's drive task pulls what B's folder holds and pushes a few edits;
#   - restore: A restores its latest files and compares them;
#   - gc every third round (`cairn server gc` beside the live server).
# Prints the RSS at start (after the first round), the peak, the RSS after the session and
# after a minute idle, and the growth per round from a linear fit over the later rounds: a
# bounded server grows by about 0 per round. The CSV is kept under bench/work.
#
#   bash bench/server_memory.sh
#   BENCH_MINUTES=60 bash bench/server_memory.sh             # the one-hour soak
#   BENCH_SERVER_ENV="GLIBC_TUNABLES=..." bash bench/server_memory.sh
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_WORK:-$ROOT/bench/work}/server_memory
MINUTES=${BENCH_MINUTES:-10}
SAMPLE=${BENCH_SAMPLE:-5}
LARGE_MB=${BENCH_LARGE_MB:-128}
SMALL_FILES=${BENCH_SMALL_FILES:-20000}
CAIRN=${BENCH_CAIRN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn}
PASSWORD=bench-pw

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }
for v in MINUTES SAMPLE LARGE_MB SMALL_FILES; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done

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

rm -rf "$WORK"
mkdir -p "$WORK"/{server,a,b,c}/home "$WORK"/{a,b,c}/tree
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# shellcheck disable=SC2086 # BENCH_SERVER_ENV is a list of NAME=VALUE words
env ${BENCH_SERVER_ENV:-} "$CAIRN" server run --data "$WORK/server/data" --listen "127.0.0.1:$port" \
  </dev/null >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for ((i = 0; i < 300; i++)); do
  kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited (log: $WORK/server.log)"
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.1
done

srv() { "$CAIRN" server "$@" --data "$WORK/server/data" </dev/null; }
as() { local who=$1; shift; CAIRN_HOME=$WORK/$who/home "$CAIRN" "$@" </dev/null; }
{
  printf '%s\n' "$PASSWORD" | "$CAIRN" server user add bench --password-stdin --data "$WORK/server/data"
  for f in large small; do
    srv folder add "$f" --keep-versions 2
    srv folder grant "$f" bench --access rw
  done
  fp=$(srv fingerprint | awk 'NF { l = $0 } END { print l }')
  for who in a b c; do
    printf '%s\n' "$PASSWORD" | CAIRN_HOME=$WORK/$who/home "$CAIRN" connect "https://127.0.0.1:$port" \
      --user bench --password-stdin --fingerprint "$fp" --name srv
  done
  as a backup add big --local "$WORK/a/tree" --connection srv --folder large --transfers 4
  as b drive add mix --local "$WORK/b/tree" --connection srv --folder small
  as c drive add mix --local "$WORK/c/tree" --connection srv --folder small
} >"$WORK/setup.log" 2>&1 || { tail -n 20 "$WORK/setup.log" >&2; die "setup failed (log: $WORK/setup.log)"; }

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0; }
CSV=$WORK/rss.csv
echo "seconds,round,rss_kib" >"$CSV"
START=$(date +%s)
ROUND=0
(
  while kill -0 "$SERVER_PID" 2>/dev/null; do
    printf '%s,%s,%s\n' "$(($(date +%s) - START))" "$(cat "$WORK/round" 2>/dev/null || echo 0)" "$(rss_kib)" >>"$CSV"
    sleep "$SAMPLE"
  done
) &
SAMPLER_PID=$!

# Writes new contents: SHARE (percent) of COUNT small files under DIR, or 4 large files.
gen() { # small|large DIR SEED [COUNT SHARE]
  python3 - "$@" "$LARGE_MB" <<'PY'
import os, random, sys
kind, root, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
if kind == "large":
    mb = int(sys.argv[-1])
    for i in range(4):
        with open(os.path.join(root, f"big{i}.bin"), "wb") as f:
            for _ in range(mb):
                f.write(rng.randbytes(1 << 20))
else:
    count, share = int(sys.argv[4]), int(sys.argv[5])
    for i in range(count):
        if rng.randrange(100) >= share:
            continue
        d = os.path.join(root, f"{i // 1000:03d}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:05d}.bin"), "wb") as f:
            f.write(rng.randbytes(rng.randint(512, 16384)))
PY
}

step() { # LOG CMD...
  local out=$1
  shift
  "$@" >>"$WORK/$out.log" 2>&1 || { tail -n 20 "$WORK/$out.log" >&2; die "$* failed (log: $WORK/$out.log)"; }
}

END=$((START + MINUTES * 60))
AFTER=()
gen small "$WORK/b/tree" 1 "$SMALL_FILES" 100
while (($(date +%s) < END)) || ((ROUND == 0)); do
  ROUND=$((ROUND + 1))
  echo "$ROUND" >"$WORK/round"
  gen large "$WORK/a/tree" "$((ROUND * 10))"
  step a as a run big --once
  ((ROUND == 1)) || gen small "$WORK/b/tree" "$((ROUND * 10 + 1))" "$SMALL_FILES" 10
  step b as b run mix --once
  echo "edit $ROUND" >"$WORK/c/tree/edit-$((ROUND % 50)).txt"
  step c as c run mix --once
  rm -rf "$WORK/a/restored"
  step a as a restore big --to "$WORK/a/restored"
  for f in "$WORK"/a/tree/*.bin; do
    cmp -s "$f" "$(find "$WORK/a/restored" -name "$(basename "$f")" | head -n 1)" || die "restore of $f differs"
  done
  ((ROUND % 3)) || step gc srv gc
  AFTER+=("$(rss_kib)")
  log "round $ROUND: server RSS $(( ${AFTER[-1]} / 1024 )) MiB"
done
echo "idle" >"$WORK/round"
end_rss=$(rss_kib)
sleep 60
idle_rss=$(rss_kib)
kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=""
peak=$(awk -F, 'NR > 1 && $3 > m { m = $3 } END { print m + 0 }' "$CSV")
hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SERVER_PID/status")

# Growth per round: least squares over rounds from the third on (the first ones warm caches).
growth=$(printf '%s\n' "${AFTER[@]}" | awk 'NR >= 3 { n++; x += NR; y += $1; xx += NR * NR; xy += NR * $1 }
  END { if (n < 2) { print "n/a"; exit } printf "%.1f", (n * xy - x * y) / (n * xx - x * x) / 1024 }')
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
printf '\n| server RSS, %s min, %s rounds | MiB |\n| --- | ---: |\n' "$MINUTES" "$ROUND"
printf '| after round 1 | %s |\n' "$(mib "${AFTER[0]}")"
printf '| peak (sampled every %s s; VmHWM %s) | %s |\n' "$SAMPLE" "$(mib "$hwm")" "$(mib "$peak")"
printf '| after the last round | %s |\n' "$(mib "$end_rss")"
printf '| after a minute idle | %s |\n' "$(mib "$idle_rss")"
printf '| growth per round (fit over rounds 3..%s) | %s |\n' "$ROUND" "$growth"
printf '\nRSS after each round (MiB): %s\n' "$(for k in "${AFTER[@]}"; do printf '%s ' "$(mib "$k")"; done)"
printf 'samples: %s\n' "$CSV"
