#!/usr/bin/env bash
# Scale-out throughput benchmark: commits per second and a first backup of 20,000 small files,
# on the embedded server (SQLite + chunks in the data folder) against PostgreSQL + S3 with one
# and with two instances, in one run on this machine.
#
# - commits/s: THREADS clients (Python threads, one login each) commit one small file with its
#   content inline, again and again for SECONDS, all into one folder (commits to one folder are
#   serialised by the database: this is the per-folder ceiling) and then each into its own
#   folder. With two instances, half the clients talk to each.
# - first backup: two computers, FILES/2 files of 4 KiB each, back up at the same time, each
#   into its own folder; with two instances, one computer per instance. The figure is the wall
#   time until both are done.
#
#   bash bench/scaleout_load.sh
#   BENCH_FILES=20000 BENCH_SECONDS=20 BENCH_CAIRN_BIN=target/release/cairn bash bench/scaleout_load.sh
#
# PostgreSQL 15 from Debian with its defaults (fsync and synchronous_commit on, as SQLite
# syncs its commits) and s3rver from npm (scripts/test-servers installs both). s3rver is a
# development server writing plain files: the S3 figures are the protocol's cost on this
# machine, not a real object store's.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_WORK:-$ROOT/bench/work}/scaleout_load
FILES=${BENCH_FILES:-20000}
SECONDS_EACH=${BENCH_SECONDS:-20}
THREADS=${BENCH_THREADS:-8}
CAIRN=${BENCH_CAIRN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn}
PGBIN=${BENCH_PG_BIN:-/usr/lib/postgresql/15/bin}
TOOLS=${CAIRN_TEST_SERVERS:-${XDG_CACHE_HOME:-$HOME/.cache}/cairn/test-servers}
S3RVER=$TOOLS/node/node_modules/.bin/s3rver
PASSWORD=bench-pw

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }
for v in FILES SECONDS_EACH THREADS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
[[ -x $PGBIN/initdb ]] || die "no PostgreSQL at $PGBIN (run scripts/test-servers)"
[[ -x $S3RVER ]] || die "no s3rver at $S3RVER (run scripts/test-servers)"

PIDS=()
stop_servers() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  PIDS=()
}
cleanup() {
  stop_servers
  [[ -d $WORK/pg ]] && as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null 2>&1 || true
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
mkdir -p "$WORK/pg" "$WORK/sock" "$WORK/s3"
[[ $(id -u) == 0 ]] && chown postgres:postgres "$WORK/pg" "$WORK/sock"
log "PostgreSQL cluster in $WORK/pg (fsync on)"
as_pg "$PGBIN/initdb" -D "$WORK/pg" -U cairn --auth=trust >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/sock/log" -w \
  -o "-k $WORK/sock -c listen_addresses=''" start >/dev/null

S3PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log "s3rver on 127.0.0.1:$S3PORT"
NODE_OPTIONS=--openssl-legacy-provider "$S3RVER" --directory "$WORK/s3" --address 127.0.0.1 \
  --port "$S3PORT" --configure-bucket cairn-bench >"$WORK/s3.log" 2>&1 &
S3PID=$!
for _ in $(seq 300); do
  curl -s -o /dev/null "http://127.0.0.1:$S3PORT/" && break
  sleep 0.1
done
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER

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

# alice with read-write access to folders f0..f$THREADS of the server of DATA.
setup_users() { # DATA EXTRA_ARGS...
  local data=$1; shift
  printf '%s\n' "$PASSWORD" | "$CAIRN" server user add alice --password-stdin --data "$data" "$@" >/dev/null
  for i in $(seq 0 "$THREADS"); do
    "$CAIRN" server folder add "f$i" --data "$data" "$@" >/dev/null
    "$CAIRN" server folder grant "f$i" alice --access rw --data "$data" "$@" >/dev/null
  done
}

# Commits per second for SECONDS_EACH: thread t talks to PORTS[t % n]; MODE one|own says
# whether all commit into f0 or thread t into f(t+1). Prints the rate.
commits() { # MODE PORT...
  python3 - "$SECONDS_EACH" "$THREADS" "$PASSWORD" "$@" <<'PY'
import json, ssl, sys, threading, time, urllib.error, urllib.request
secs, threads, pw, mode, ports = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
ctx = ssl._create_unverified_context()
def call(port, path, body, token=None):
    req = urllib.request.Request(f"https://127.0.0.1:{port}/api/v1{path}", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json",
                                          **({"x-cairn-token": token} if token else {})})
    with urllib.request.urlopen(req, context=ctx, timeout=120) as r:
        return json.loads(r.read())
def login(t):
    # One at a time, waiting out the login gate's 429s: the figure is about commits.
    while True:
        try:
            return call(ports[t % len(ports)], "/login", {"user": "alice", "password": pw, "device": f"bench-{t}"})["token"]
        except urllib.error.HTTPError as e:
            if e.code != 429:
                raise
            time.sleep(float(e.headers.get("retry-after", "1")))
tokens = [login(t) for t in range(threads)]
done, errors, stop = [0] * threads, [], time.time() + secs
def worker(t):
    port, token = ports[t % len(ports)], tokens[t]
    folder = "f0" if mode == "one" else f"f{t + 1}"
    n = 0
    while time.time() < stop:
        text = f"thread {t} commit {n}\n"
        change = {"path": f"t{t}/c{n}.txt", "base": None,
                  "entry": {"kind": "file", "size": len(text), "mtime_ns": 1, "mode": 420, "hash": None},
                  "inline": {"text": text}}
        try:
            r = call(port, f"/folders/{folder}/commit", {"changes": [change]}, token)
            if r["results"][0]["status"] != "accepted":
                errors.append(r["results"][0]); return
        except Exception as e:  # counted, shown, and the thread stops
            errors.append(repr(e)); return
        n += 1
    done[t] = n
ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
start = time.time()
for t in ts: t.start()
for t in ts: t.join()
if errors:
    print(f"errors: {errors[:3]}", file=sys.stderr); sys.exit(1)
print(f"{sum(done) / (time.time() - start):.0f}")
PY
}

# A computer with N files of 4 KiB under its own home, its backup task into FOLDER on PORT.
computer() { # NAME PORT DATA FOLDER N EXTRA_ARGS...
  local home=$WORK/$1 fp
  shift
  mkdir -p "$home/files"
  python3 - "$home/files" "$4" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"d{i // 1000}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}.bin"), "wb") as f:
        f.write(os.urandom(4096))
PY
  fp=$("$CAIRN" server fingerprint --data "$2")
  printf '%s\n' "$PASSWORD" | CAIRN_HOME=$home "$CAIRN" connect "https://127.0.0.1:$1" --user alice \
    --password-stdin --fingerprint "$fp" --name srv >/dev/null
  CAIRN_HOME=$home "$CAIRN" backup add t --local "$home/files" --connection srv --folder "$3" >/dev/null
  echo "$home"
}

# Both computers' first backups at once; prints the wall seconds.
first_backup() { # HOME1 HOME2
  local start end
  start=$(date +%s.%N)
  CAIRN_HOME=$1 "$CAIRN" run t --once >/dev/null 2>"$1.err" &
  local a=$!
  CAIRN_HOME=$2 "$CAIRN" run t --once >/dev/null 2>"$2.err" &
  local b=$!
  wait "$a" || die "backup of $1 failed: $(cat "$1.err")"
  wait "$b" || die "backup of $2 failed: $(cat "$2.err")"
  end=$(date +%s.%N)
  python3 -c "print(f'{$end - $start:.2f}')"
}

ROWS=()
# One setup: NAME, the setup's extra args, and whether to start a second instance.
measure_setup() { # LABEL NAME INSTANCES ARGS...
  local label=$1 name=$2 n=$3
  shift 3
  log "$label"
  local p1 p2 ports
  p1=$(serve "$name-1" "$@")
  setup_users "$WORK/$name-1" "${@:1:2}"
  ports=("$p1")
  if [[ $n == 2 ]]; then
    # One certificate for both, as behind a load balancer (docs/deployment.md).
    mkdir -p "$WORK/$name-2" && cp -a "$WORK/$name-1/tls" "$WORK/$name-2/"
    p2=$(serve "$name-2" "$@")
    ports+=("$p2")
  else
    p2=$p1
  fi
  local one own h1 h2 backup
  one=$(commits one "${ports[@]}")
  own=$(commits own "${ports[@]}")
  h1=$(computer "$name-pc1" "$p1" "$WORK/$name-1" f1 $((FILES / 2)))
  h2=$(computer "$name-pc2" "$p2" "$WORK/$name-1" f2 $((FILES / 2)))
  backup=$(first_backup "$h1" "$h2")
  ROWS+=("| $label | $one | $own | $backup |")
  stop_servers
}

measure_setup "embedded (SQLite, chunks in the data folder), one instance" lite 1
# PostgreSQL with the chunks in a folder: what the database costs, apart from S3.
as_pg "$PGBIN/createdb" -h "$WORK/sock" -U cairn cairn0
measure_setup "PostgreSQL, chunks in a folder, one instance" pgfs 1 \
  --metadata "host=$WORK/sock user=cairn dbname=cairn0" --store "file://$WORK/pgfs-chunks"
db=0
for n in 1 2; do
  db=$((db + 1))
  as_pg "$PGBIN/createdb" -h "$WORK/sock" -U cairn "cairn$db"
  measure_setup "PostgreSQL + S3 (s3rver), $n instance(s)" "pg$n" "$n" \
    --metadata "host=$WORK/sock user=cairn dbname=cairn$db" \
    --store "s3://cairn-bench/pg$n?endpoint=http://127.0.0.1:$S3PORT&region=us-east-1"
done
kill "$S3PID" 2>/dev/null || true

# What the rows cost on PostgreSQL, for the sizing estimate in docs/deployment.md: the
# one-instance database after its commits and backups.
log "table and index sizes of cairn1"
SIZES=$("$PGBIN/psql" -h "$WORK/sock" -U cairn -d cairn1 -qAt -F ' | ' -c "ANALYZE" -c "
  SELECT c.relname, c.reltuples::bigint, pg_relation_size(c.oid), pg_indexes_size(c.oid),
         CASE WHEN c.reltuples > 0 THEN round(pg_relation_size(c.oid) / c.reltuples) END,
         CASE WHEN c.reltuples > 0 THEN round(pg_indexes_size(c.oid) / c.reltuples) END
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.reltuples > 0
   ORDER BY pg_total_relation_size(c.oid) DESC")

echo
echo "$THREADS clients committing one small file per request for ${SECONDS_EACH} s; two computers backing up $((FILES / 2)) files of 4 KiB each at once"
echo "| setup | commits/s, one folder | commits/s, a folder per client | first backup of $FILES files, s |"
echo "| --- | --- | --- | --- |"
printf '%s\n' "${ROWS[@]}"
echo
echo "PostgreSQL sizes after the one-instance run (heap and all indexes; per row)"
echo "| table | rows | heap bytes | index bytes | heap B/row | index B/row |"
echo "| --- | --- | --- | --- | --- | --- |"
sed 's/^/| /; s/$/ |/' <<<"$SIZES"
