#!/usr/bin/env bash
# Scale-out wake-up benchmark: two cairn servers on one PostgreSQL database and one chunk
# folder. A journal long-poll (`wait=60`) waits on instance TWO while a backup commits through
# instance ONE; the figure is the time from the commit (the version's committed_ns) to the
# long-poll's answer reaching the client. The same is measured with both on one instance (the
# floor: no database round trip between them) and on the embedded SQLite server for reference.
# Without the cross-instance wake-up (LISTEN/NOTIFY) the poll would answer only at its 60 s.
#
#   bash bench/scaleout.sh
#   BENCH_ROUNDS=50 BENCH_CAIRN_BIN=target/release/cairn bash bench/scaleout.sh
#
# Needs PostgreSQL 15 from Debian (scripts/test-servers installs it); as root, the cluster
# runs as the `postgres` user.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_WORK:-$ROOT/bench/work}/scaleout
ROUNDS=${BENCH_ROUNDS:-20}
CAIRN=${BENCH_CAIRN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn}
PGBIN=${BENCH_PG_BIN:-/usr/lib/postgresql/15/bin}
PASSWORD=bench-pw

log() { printf '==> %s\n' "$*"; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive integer, got '$ROUNDS'"
[[ -x $PGBIN/initdb ]] || die "no PostgreSQL at $PGBIN (run scripts/test-servers)"

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  [[ -d $WORK/pg ]] && as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

as_pg() { if [[ $(id -u) == 0 ]]; then setpriv --reuid=postgres --regid=postgres --init-groups "$@"; else "$@"; fi; }

if [[ -z ${BENCH_CAIRN_BIN:-} ]]; then
  log "building cairn (release)"
  (cd "$ROOT" && cargo build --release -p cairn --quiet)
fi
[[ -x $CAIRN ]] || die "no cairn binary at $CAIRN"

rm -rf "$WORK"
mkdir -p "$WORK/pg" "$WORK/sock"
[[ $(id -u) == 0 ]] && chown postgres:postgres "$WORK/pg" "$WORK/sock"
log "PostgreSQL cluster in $WORK/pg"
as_pg "$PGBIN/initdb" -D "$WORK/pg" -U cairn --auth=trust >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/sock/log" -w \
  -o "-k $WORK/sock -c listen_addresses='' -c fsync=off" start >/dev/null
as_pg "$PGBIN/createdb" -h "$WORK/sock" -U cairn cairn
URL="host=$WORK/sock user=cairn dbname=cairn"

# Starts `cairn server run` with ARGS; prints its port.
serve() { # NAME ARGS...
  local name=$1; shift
  "$CAIRN" server run --data "$WORK/$name" --listen 127.0.0.1:0 "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=($!)
  for _ in $(seq 600); do
    if grep -q 'listening on https://' "$WORK/$name.out" 2>/dev/null; then
      sed -n 's/.*listening on https:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$WORK/$name.out" | head -1
      return
    fi
    sleep 0.1
  done
  die "server $name did not start: $(cat "$WORK/$name.err")"
}

setup_users() { # DATA EXTRA_ARGS...
  local data=$1; shift
  printf '%s\n' "$PASSWORD" | "$CAIRN" server user add alice --password-stdin --data "$data" "$@" >/dev/null
  "$CAIRN" server folder add backup --data "$data" "$@" >/dev/null
  "$CAIRN" server folder grant backup alice --access rw --data "$data" "$@" >/dev/null
}

# The committing side: a backup task on instance PORT of DATA's server.
client() { # PORT DATA
  local home=$WORK/client-$1
  mkdir -p "$home/files"
  local fp
  fp=$("$CAIRN" server fingerprint --data "$2")
  printf '%s\n' "$PASSWORD" | CAIRN_HOME=$home "$CAIRN" connect "https://127.0.0.1:$1" --user alice \
    --password-stdin --fingerprint "$fp" --name srv >/dev/null
  CAIRN_HOME=$home "$CAIRN" backup add t --local "$home/files" --connection srv --folder backup >/dev/null
  echo "$home"
}

# ROUNDS rounds: a long-poll on POLL_PORT, a commit through HOME's task; prints the wake-up
# times in milliseconds, one per line.
measure() { # POLL_PORT HOME LABEL
  python3 - "$1" "$2" "$CAIRN" "$ROUNDS" "$PASSWORD" "$3" <<'PY'
import json, os, ssl, subprocess, sys, threading, time, urllib.request
port, home, cairn, rounds, pw, label = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
ctx = ssl._create_unverified_context()
base = f"https://127.0.0.1:{port}/api/v1"
def call(path, body=None, token=None, timeout=90):
    req = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(),
                                 headers={"content-type": "application/json", **({"authorization": "Bearer " + token} if token else {})})
    with urllib.request.urlopen(req, context=ctx, timeout=timeout) as r:
        return json.loads(r.read())
token = call("/login", {"user": "alice", "password": pw})["token"]
env = dict(os.environ, CAIRN_HOME=home)
for i in range(rounds):
    head = call("/folders/backup/journal?after=0&limit=1", token=token)["head"]
    answer = {}
    def poll():
        answer["body"] = call(f"/folders/backup/journal?after={head}&wait=60", token=token)
        answer["at"] = time.time_ns()
    t = threading.Thread(target=poll); t.start()
    time.sleep(0.3)  # the poll is waiting before the commit
    # A new file each round (and each setup), so every run commits.
    with open(os.path.join(home, "files", f"{label}-{i}.txt"), "w") as f:
        f.write(f"round {i}\n")
    subprocess.run([cairn, "run", "t"], env=env, check=True, stdout=subprocess.DEVNULL)
    t.join()
    changes = answer["body"]["changes"]
    if not changes:
        print("timeout", flush=True); continue
    committed = max(c["committed_ns"] for c in changes)
    print(f"{(answer['at'] - committed) / 1e6:.2f}", flush=True)
PY
}

summary() { # LABEL FILE
  python3 - "$1" "$2" <<'PY'
import statistics, sys
label, path = sys.argv[1], sys.argv[2]
vals = [l.strip() for l in open(path) if l.strip()]
times = sorted(float(v) for v in vals if v != "timeout")
late = len(vals) - len(times)
if not times:
    print(f"| {label} | - | - | - | {late} |"); sys.exit()
p = lambda q: times[min(len(times) - 1, int(q * len(times)))]
print(f"| {label} | {statistics.median(times):.1f} | {p(0.9):.1f} | {times[-1]:.1f} | {late} |")
PY
}

log "two instances on PostgreSQL, one chunk folder"
STORE="file://$WORK/chunks"
P1=$(serve one --metadata "$URL" --store "$STORE")
setup_users "$WORK/one" --metadata "$URL"
P2=$(serve two --metadata "$URL" --store "$STORE")
H1=$(client "$P1" "$WORK/one")
log "$ROUNDS rounds: poll on instance two, commit through instance one"
measure "$P2" "$H1" cross >"$WORK/cross.txt"
log "$ROUNDS rounds: poll and commit on instance one"
measure "$P1" "$H1" same >"$WORK/same.txt"

log "the embedded server (SQLite) for reference"
P3=$(serve lite)
setup_users "$WORK/lite"
H3=$(client "$P3" "$WORK/lite")
measure "$P3" "$H3" lite >"$WORK/lite.txt"

echo
echo "wake-up: commit (committed_ns) to the long-poll's answer at the client, ms ($ROUNDS rounds)"
echo "| setup | median | p90 | max | no wake within 60 s |"
echo "| --- | --- | --- | --- | --- |"
summary "PostgreSQL, poll on instance two, commit through one" "$WORK/cross.txt"
summary "PostgreSQL, poll and commit on one instance" "$WORK/same.txt"
summary "SQLite, one server" "$WORK/lite.txt"
