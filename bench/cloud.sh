#!/usr/bin/env bash
# Cloud benchmark: a cairn cloud task against rclone (Debian package), one after
# the other against the same local S3 (moto) and WebDAV (wsgidav) servers, with
# the same number of transfers. Four rows per server: 2,000 small files, the
# large files, a re-run with nothing changed, a 4 KiB edit in one large file.
# Wall time, HTTP requests and bytes are measured outside both tools, by a
# counting TCP proxy in front of the server. See bench/README.md.
#
# Then, for cairn alone, traffic control: fresh files sent with a task's own upload
# cap inside a connection limit twice as high, and fetched again by a second home
# with a download cap; the rate the proxy saw is checked within 20 % of the cap.
#
#   bash bench/cloud.sh
#   BENCH_LARGE_MB=128 BENCH_SMALL_FILES=200 BENCH_SERVERS=webdav bash bench/cloud.sh
#   BENCH_LIMIT_MB=48 BENCH_LIMIT_KB=4000 (the traffic-control rows; BENCH_LIMIT_MB=0 skips them)
#   BENCH_EDIT_RUNS=3 (row 4 is run this many times, each a fresh edit; the median stands)
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_WORK:-$ROOT/bench/work}
LARGE_MB=${BENCH_LARGE_MB:-1024}
SMALL_FILES=${BENCH_SMALL_FILES:-2000}
TRANSFERS=${BENCH_TRANSFERS:-4}
TOOLS=${BENCH_TOOLS:-cairn rclone}
SERVERS=${BENCH_SERVERS:-s3 webdav}
DIRECTION=${BENCH_CAIRN_DIRECTION:-upload-only}
STRICT=${BENCH_STRICT:-0}
LIMIT_MB=${BENCH_LIMIT_MB:-48}
LIMIT_KB=${BENCH_LIMIT_KB:-4000}
EDIT_RUNS=${BENCH_EDIT_RUNS:-3}
# BENCH_CAIRN_BIN: use an existing binary and skip the build.
CAIRN=${BENCH_CAIRN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn}

DATA=$WORK/cloud-data   # generated once, reused while parameters match
STATE=$WORK/cloud       # per server/tool: server root, local folder, homes
LOGS=$STATE/logs
PROXY=$STATE/proxy.py
RESULTS=$WORK/cloud-results.md
MIB=1048576
DATA_MTIME=@1577836800
ROWS="small large rerun edit"
# A CA bundle named in the environment breaks rclone's S3 client (it refuses its own
# transport) and is of no use against plain-HTTP local servers.
unset AWS_CA_BUNDLE

log() { printf '==> %s\n' "$*"; }
warn() { printf '==> WARNING: %s\n' "$*" >&2; }
die() { printf 'cloud bench: error: %s\n' "$*" >&2; exit 1; }

for t in $TOOLS; do
  case $t in cairn | rclone) ;; *) die "unknown tool '$t' in BENCH_TOOLS (known: cairn rclone)" ;; esac
done
for s in $SERVERS; do
  case $s in s3 | webdav) ;; *) die "unknown server '$s' in BENCH_SERVERS (known: s3 webdav)" ;; esac
done
case $DIRECTION in bidirectional | upload-only) ;; *) die "BENCH_CAIRN_DIRECTION must be bidirectional or upload-only, got '$DIRECTION'" ;; esac
[[ $LARGE_MB =~ ^[1-9][0-9]*$ ]] && ((LARGE_MB % 4 == 0)) || die "BENCH_LARGE_MB must be a positive multiple of 4, got '$LARGE_MB'"
[[ $SMALL_FILES =~ ^[1-9][0-9]*$ ]] || die "BENCH_SMALL_FILES must be a positive integer, got '$SMALL_FILES'"
[[ $TRANSFERS =~ ^[1-9][0-9]*$ ]] || die "BENCH_TRANSFERS must be a positive integer, got '$TRANSFERS'"
[[ $LIMIT_MB =~ ^[0-9]+$ ]] && ((LIMIT_MB % 2 == 0)) || die "BENCH_LIMIT_MB must be an even number (0 skips the rows), got '$LIMIT_MB'"
[[ $EDIT_RUNS =~ ^[1-9][0-9]*$ ]] && ((EDIT_RUNS % 2 == 1)) || die "BENCH_EDIT_RUNS must be an odd positive integer, got '$EDIT_RUNS'"
[[ $LIMIT_KB =~ ^[1-9][0-9]*$ ]] || die "BENCH_LIMIT_KB must be a positive integer, got '$LIMIT_KB'"
has_tool() { [[ " $TOOLS " == *" $1 "* ]]; }
PART_MB=$((LARGE_MB / 4)) # each large file; the edited file of row 4 is one of them

# ---------------------------------------------------------------- cleanup ---
PIDS=()

alive() { # PID: running (a zombie not reaped yet does not count)
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $st && ${st%% *} != Z ]]
}

stop_pid() { # PID: TERM, then KILL after 10 s
  local pid=$1 i
  [[ -n $pid ]] || return 0
  kill "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop_all() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[$i]}"; done
  PIDS=()
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# ----------------------------------------------------------- dependencies ---
ensure_packages() {
  local -a missing=()
  command -v python3 >/dev/null || missing+=(python3)
  command -v openssl >/dev/null || missing+=(openssl)
  # rclone also checks what landed on the servers, so it is needed either way.
  command -v rclone >/dev/null || missing+=(rclone)
  if ((${#missing[@]})); then
    [[ $(id -u) == 0 ]] || die "missing packages (${missing[*]}) and not root: install them with apt-get"
    log "installing ${missing[*]}"
    apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
      die "apt-get install ${missing[*]} failed"
  fi
  if [[ " $SERVERS " == *" s3 "* ]] && ! command -v moto_server >/dev/null; then
    log "installing moto[server] with pip"
    python3 -m pip install -q 'moto[server]' || die "pip install moto[server] failed"
  fi
  if [[ " $SERVERS " == *" webdav "* ]] && ! command -v wsgidav >/dev/null; then
    log "installing wsgidav and cheroot with pip"
    python3 -m pip install -q wsgidav cheroot || die "pip install wsgidav cheroot failed"
  fi
}

build_cairn() {
  has_tool cairn || return 0
  if [[ -n ${BENCH_CAIRN_BIN:-} ]]; then
    [[ -x $CAIRN ]] || die "BENCH_CAIRN_BIN=$CAIRN is not executable"
    log "using prebuilt $CAIRN (BENCH_CAIRN_BIN)"
  else
    log "building cairn (cargo build --release -p cairn)"
    (cd "$ROOT" && cargo build --release -p cairn) || die "cargo build --release -p cairn failed"
    [[ -x $CAIRN ]] || die "build succeeded but $CAIRN is missing"
  fi
  "$CAIRN" cloud --help >/dev/null 2>&1 || die "$CAIRN has no 'cloud' command (stale binary?)"
}

# ------------------------------------------------------------------- data ---
# Large files: AES-128-CTR keystream (incompressible, deterministic), one key each.
gen_large_file() { # PATH BYTES INDEX
  local key
  key=$(printf 'cairn-cloud-bench-large-%s' "$3" | sha256sum | cut -c1-32)
  head -c "$2" /dev/zero |
    openssl enc -aes-128-ctr -nosalt -K "$key" -iv 00000000000000000000000000000000 >"$1"
  [[ $(stat -c %s "$1") == "$2" ]] || die "generating $1 failed"
}

generate_data() {
  local stamp="cloud-gen-v1 large_mb=$LARGE_MB small_files=$SMALL_FILES" i
  if [[ -f $DATA/.stamp && $(<"$DATA/.stamp") == "$stamp" ]]; then
    log "data up to date in $DATA ($stamp)"
    return
  fi
  log "generating data in $DATA ($stamp)"
  local t0=$SECONDS
  rm -rf "$DATA"
  mkdir -p "$DATA/large" "$DATA/small"
  for i in 0 1 2 3; do gen_large_file "$DATA/large/part-$i.bin" $((PART_MB * MIB)) "$i"; done
  # Small files: 1-16 KiB, 100 per folder, and the 4 KiB patch of row 4, from a seeded PRNG.
  python3 - "$DATA/small" "$SMALL_FILES" "$DATA/patch-4k.bin" <<'PY'
import os, random, sys
root, count, patch = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rng = random.Random(20261130)
for i in range(count):
    d = os.path.join(root, f"d{i // 100:03d}")
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}.bin"), "wb") as f:
        f.write(rng.randbytes(rng.randint(1024, 16384)))
with open(patch, "wb") as f:
    f.write(random.Random(4096).randbytes(4096))
PY
  find "$DATA/small" "$DATA/large" -exec touch -h -d "$DATA_MTIME" {} +
  printf '%s\n' "$stamp" >"$DATA/.stamp"
  log "data generated in $((SECONDS - t0)) s ($(du -sh "$DATA" | cut -f1))"
}

# The local folder of one tool: small/ now, large/ staged beside it and moved in
# (one rename) before row 2. Hard links, except the file row 4 edits.
prepare_local() { # DIR
  local d=$1
  rm -rf "$d/local" "$d/stage"
  mkdir -p "$d/local" "$d/stage"
  cp -al "$DATA/small" "$d/local/small"
  cp -al "$DATA/large" "$d/stage/large"
  rm "$d/stage/large/part-1.bin"
  cp -p "$DATA/large/part-1.bin" "$d/stage/large/part-1.bin"
  touch -d "$DATA_MTIME" "$d/local" "$d/stage/large"
}

apply_edit() { # FILE [N]: 4 KiB overwritten in the middle (the Nth block after it); the size stays the same
  local size
  size=$(stat -c %s "$1")
  dd if="$DATA/patch-4k.bin" of="$1" bs=4096 seek=$((size / 2 / 4096 + ${2:-0})) count=1 conv=notrunc status=none
}

# Row 4 is one upload of one file, short enough for this VM's disk to swing it by a second
# from one run to the next (seen: the same build 0.85-2.06 s): it runs EDIT_RUNS times, each
# a fresh 4 KiB edit, and the run with the median time stands for the row.
measure_edit() { # KIND TOOL DIR
  local kind=$1 tool=$2 d=$3 i key walls=() pick
  for ((i = 1; i <= EDIT_RUNS; i++)); do
    apply_edit "$d/local/large/part-1.bin" "$((i - 1))"
    key="edit#$i:$kind:$tool"
    run_measured "$key" "$LOGS/$kind-$tool-edit-$i.log"
    walls+=("${R_WALL[$key]} $i")
  done
  pick=$(printf '%s\n' "${walls[@]}" | sort -n | awk -v m=$(((EDIT_RUNS + 1) / 2)) 'NR == m { print $2 }')
  key="edit:$kind:$tool"
  R_WALL[$key]=${R_WALL[edit#$pick:$kind:$tool]}
  R_REQ[$key]=${R_REQ[edit#$pick:$kind:$tool]}
  R_UP[$key]=${R_UP[edit#$pick:$kind:$tool]}
  R_DOWN[$key]=${R_DOWN[edit#$pick:$kind:$tool]}
  R_METHODS[$key]=${R_METHODS[edit#$pick:$kind:$tool]}
  log "  $key: run $pick has the median time of $EDIT_RUNS ($(printf '%s\n' "${walls[@]}" |
    awk '{ printf "%s%.2f s", (NR > 1 ? ", " : ""), $1 }'))"
}

# ------------------------------------------------------------------ proxy ---
# A counting TCP proxy in front of each server: both tools talk to it. It counts
# the bytes each way and the HTTP requests (request heads found by following the
# request framing: Content-Length and chunked bodies), by method. A control port
# answers "zero" and "get" (JSON).
write_proxy() {
  cat >"$PROXY" <<'PY'
import json, socket, sys, threading

listen_port, target_port, ctl_port = (int(x) for x in sys.argv[1:4])
lock = threading.Lock()

def fresh():
    return {"up": 0, "down": 0, "requests": 0, "methods": {}, "connections": 0}

stats = fresh()

class Requests:
    """Follows the client's byte stream and counts the request heads in it."""
    def __init__(self):
        self.pending = b""
        self.state = "head"
        self.head = []
        self.left = 0
        self.after = "head"

    def feed(self, data, n):
        """The first n bytes of data (a bytearray) came from the client."""
        i = 0
        while i < n:
            if self.state == "body":
                take = min(self.left, n - i)
                i += take
                self.left -= take
                if self.left == 0:
                    self.state = self.after
                continue
            j = data.find(b"\n", i, n)
            if j < 0:
                self.pending += bytes(data[i:n])
                return
            line = self.pending + bytes(data[i:j + 1])
            self.pending = b""
            i = j + 1
            self.line(line.rstrip(b"\r\n"))

    def line(self, line):
        if self.state == "head":
            if line:
                self.head.append(line)
            elif self.head:
                self.request()
        elif self.state == "size":
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.state = "trailer"
            else:
                self.state, self.left, self.after = "body", size, "chunk-end"
        elif self.state == "chunk-end":
            self.state = "size"
        elif self.state == "trailer" and not line:
            self.state = "head"

    def request(self):
        method = self.head[0].split(b" ", 1)[0].decode("latin-1")
        length, chunked = 0, False
        for h in self.head[1:]:
            name, _, value = h.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        self.head = []
        with lock:
            stats["requests"] += 1
            stats["methods"][method] = stats["methods"].get(method, 0) + 1
        if chunked:
            self.state = "size"
        elif length > 0:
            self.state, self.left, self.after = "body", length, "head"

def pump(src, dst, key, parser):
    buf = bytearray(1 << 18)
    view = memoryview(buf)
    try:
        while True:
            n = src.recv_into(buf)
            if n == 0:
                break
            with lock:
                stats[key] += n
            if parser is not None:
                try:
                    parser.feed(buf, n)
                except ValueError:  # not HTTP as we know it: count bytes only
                    parser = None
                    with lock:
                        stats["unparsed_connections"] = stats.get("unparsed_connections", 0) + 1
            dst.sendall(view[:n])
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

def serve(client):
    try:
        server = socket.create_connection(("127.0.0.1", target_port))
    except OSError:
        client.close()
        return
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with lock:
        stats["connections"] += 1
    up = threading.Thread(target=pump, args=(client, server, "up", Requests()), daemon=True)
    up.start()
    pump(server, client, "down", None)
    up.join()
    client.close()
    server.close()

def control():
    global stats
    ctl = socket.create_server(("127.0.0.1", ctl_port))
    while True:
        conn, _ = ctl.accept()
        with conn:
            cmd = conn.makefile().readline().strip()
            with lock:
                out = json.dumps(stats)
                if cmd == "zero":
                    stats = fresh()
            conn.sendall(out.encode() + b"\n")

threading.Thread(target=control, daemon=True).start()
lsock = socket.create_server(("127.0.0.1", listen_port), backlog=128)
while True:
    c, _ = lsock.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
}

CTL_PORT=""
proxy_cmd() { # zero|get -> JSON of the counts before the command
  python3 -c 'import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(sys.argv[2].encode() + b"\n")
print(s.makefile().readline().strip())' "$CTL_PORT" "$1"
}
json_field() { python3 -c 'import json, sys; v = json.loads(sys.argv[1]); print(v[sys.argv[2]])' "$1" "$2"; }
json_methods() { python3 -c 'import json, sys; m = json.loads(sys.argv[1])["methods"]; print(" ".join(f"{k}={v}" for k, v in sorted(m.items())))' "$1"; }

# -------------------------------------------------------------- networking ---
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # PORT PID NAME LOGFILE
  local i
  for ((i = 0; i < 600; i++)); do
    alive "$2" || { tail -n 20 "$4" >&2; die "$3 exited during startup (log: $4)"; }
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  die "$3 did not accept connections on 127.0.0.1:$1 within 60 s (log: $4)"
}

# ---------------------------------------------------------------- servers ---
# start_server KIND DIR: a fresh server and its proxy; sets SERVER_PORT (direct, for
# setup and checks), PROXY_PORT (what the tools use) and CTL_PORT.
SERVER_PORT="" PROXY_PORT="" SERVER_PID="" LOG_NAME=""
start_server() {
  local kind=$1 d=$2 name=$LOG_NAME
  SERVER_PORT=$(free_port)
  case $kind in
    s3)
      moto_server -H 127.0.0.1 -p "$SERVER_PORT" </dev/null >"$LOGS/$name-server.log" 2>&1 &
      ;;
    webdav)
      mkdir -p "$d/dav"
      wsgidav --host 127.0.0.1 --port "$SERVER_PORT" --root "$d/dav" --auth anonymous --no-config -q \
        </dev/null >"$LOGS/$name-server.log" 2>&1 &
      ;;
  esac
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_port "$SERVER_PORT" "$SERVER_PID" "$kind server" "$LOGS/$name-server.log"
  PROXY_PORT=$(free_port)
  CTL_PORT=$(free_port)
  python3 "$PROXY" "$PROXY_PORT" "$SERVER_PORT" "$CTL_PORT" </dev/null >"$LOGS/$name-proxy.log" 2>&1 &
  PIDS+=($!)
  wait_port "$PROXY_PORT" "$!" "proxy" "$LOGS/$name-proxy.log"
  wait_port "$CTL_PORT" "$!" "proxy control" "$LOGS/$name-proxy.log"
  if [[ $kind == s3 ]]; then
    # moto takes an unsigned bucket creation.
    python3 -c 'import sys, urllib.request
r = urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="PUT"))
assert r.status == 200, r.status' "http://127.0.0.1:$SERVER_PORT/bench" || die "creating the bucket on moto failed"
  fi
}

# rclone remotes for the proxy (what rclone syncs to) and for the server itself
# (what the checks read, uncounted).
write_rclone_conf() { # FILE
  local port name
  : >"$1"
  for name in proxy direct; do
    if [[ $name == proxy ]]; then port=$PROXY_PORT; else port=$SERVER_PORT; fi
    cat >>"$1" <<EOF
[s3-$name]
type = s3
provider = Other
access_key_id = test
secret_access_key = test
endpoint = http://127.0.0.1:$port
region = us-east-1
force_path_style = true

[webdav-$name]
type = webdav
url = http://127.0.0.1:$port
vendor = other

EOF
  done
}

remote_of() { # KIND VIA -> rclone remote path of the synced data
  case $1 in
    s3) echo "s3-$2:bench/data" ;;
    webdav) echo "webdav-$2:data" ;;
  esac
}

# ------------------------------------------------------------------ tools ---
#   <tool>_setup KIND DIR   configure the tool against the proxy (untimed)
#   <tool>_cmd   KIND DIR   sets CMD to one sync pass of DIR/local
CMD=()

cairn_connect() { # KIND HOME: connection `c` to the proxy
  case $1 in
    s3)
      printf 'test\n' | CAIRN_HOME=$2 "$CAIRN" cloud connect c --provider s3 \
        --endpoint "http://127.0.0.1:$PROXY_PORT" --bucket bench \
        --option access_key_id=test --secret secret_access_key
      ;;
    webdav)
      CAIRN_HOME=$2 "$CAIRN" cloud connect c --provider webdav \
        --endpoint "http://127.0.0.1:$PROXY_PORT" </dev/null
      ;;
  esac
}

cairn_setup() {
  local kind=$1 d=$2
  mkdir -p "$d/home"
  {
    cairn_connect "$kind" "$d/home"
    # WebDAV takes a file in one PUT: cairn sends it whole there (a part size does not apply).
    CAIRN_HOME=$d/home "$CAIRN" cloud add bench --connection c --local "$d/local" --remote data \
      --direction "$DIRECTION" --transfers "$TRANSFERS" </dev/null
  } >>"$LOGS/setup.log" 2>&1 || { tail -n 20 "$LOGS/setup.log" >&2; die "cairn setup failed (log: $LOGS/setup.log)"; }
}
cairn_cmd() { CMD=(env "CAIRN_HOME=$2/home" "$CAIRN" run bench); }

rclone_setup() { write_rclone_conf "$2/rclone.conf"; }
# WebDAV (vendor other) keeps no times and no hashes, so rclone's default compares sizes only
# and skips a same-size edit; --checksum falls back to sizes too. rclone's documented way for
# such a remote is --update --use-server-modtime: a file newer here than its upload there is
# sent (as an editor moves a file's time). See bench/README.md.
rclone_flags() {
  case $1 in
    webdav) echo "--update --use-server-modtime" ;;
    *) echo "" ;;
  esac
}
rclone_cmd() {
  local -a extra
  read -r -a extra <<<"$(rclone_flags "$1")"
  CMD=(rclone --config "$2/rclone.conf" sync "$2/local" "$(remote_of "$1" proxy)"
    --transfers "$TRANSFERS" "${extra[@]}" -v --stats 0)
}

# ---------------------------------------------------------------- measure ---
declare -A R_WALL R_REQ R_UP R_DOWN R_METHODS
NOTES=()

fmt2() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }
mib2() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }

run_measured() { # KEY LOG
  local key=$1 out=$2 t0 t1 counts
  sync
  proxy_cmd zero >/dev/null
  t0=$(date +%s%N)
  if ! "${CMD[@]}" </dev/null >"$out" 2>&1; then
    tail -n 20 "$out" >&2
    die "failed ($key): ${CMD[*]} (log: $out)"
  fi
  t1=$(date +%s%N)
  counts=$(proxy_cmd get)
  R_WALL[$key]=$(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.4f", ns / 1e9 }')
  R_REQ[$key]=$(json_field "$counts" requests)
  R_UP[$key]=$(json_field "$counts" up)
  R_DOWN[$key]=$(json_field "$counts" down)
  R_METHODS[$key]=$(json_methods "$counts")
  log "$(printf '  %-22s %8s s %7s requests %9s MiB sent %8s MiB received  [%s]' \
    "$key" "$(fmt2 "${R_WALL[$key]}")" "${R_REQ[$key]}" "$(mib2 "${R_UP[$key]}")" \
    "$(mib2 "${R_DOWN[$key]}")" "${R_METHODS[$key]}")"
}

# What landed on the server after a row, read straight from it (not counted): the
# number and total size of the files, and after row 4 the hash of the edited file.
declare -A R_CHECK
verify() { # KEY KIND DIR
  local key=$1 kind=$2 d=$3 remote want got hl="" hr=""
  remote=$(remote_of "$kind" direct)
  [[ -f $d/check.conf ]] || write_rclone_conf "$d/check.conf"
  want=$(find "$d/local" -type f -printf '%s\n' | awk '{ n++; s += $1 } END { print n + 0, s + 0 }')
  got=$(rclone --config "$d/check.conf" size --json --exclude '/.cairn/**' "$remote" 2>>"$LOGS/check.log" |
    python3 -c 'import json, sys; j = json.load(sys.stdin); print(j["count"], j["bytes"])') || got="?"
  if [[ $key == edit:* ]]; then
    hl=$(sha256sum <"$d/local/large/part-1.bin" | cut -c1-16)
    hr=$(rclone --config "$d/check.conf" cat "$remote/large/part-1.bin" 2>>"$LOGS/check.log" | sha256sum | cut -c1-16)
  fi
  if [[ $want == "$got" && $hl == "$hr" ]]; then
    R_CHECK[$key]=ok
  else
    R_CHECK[$key]=WRONG
    NOTES+=("$key: the server does not hold the local folder: local $want (files bytes), server $got${hl:+; edited file: local sha256 $hl..., server $hr...}")
    warn "${NOTES[-1]}"
  fi
}

# ------------------------------------------------------- traffic control ---
# Rows 5 and 6 (cairn only): LIMIT_MB of fresh incompressible data in two files, sent by
# the task with its own cap of LIMIT_KB KB/s inside a connection limit of twice that, then
# fetched by a second home whose download-only task has the same cap as its own. The rate is
# the bytes the proxy saw over the wall time; it must be within 20 % of the cap (the first
# second's burst included).
declare -A R_RATE=()
limit_rows() { # KIND DIR
  local kind=$1 d=$2 key
  ((LIMIT_MB > 0)) || return 0
  mkdir -p "$d/local/limited" "$d/home2" "$d/fetched"
  gen_large_file "$d/local/limited/a.bin" $((LIMIT_MB * MIB / 2)) 10
  gen_large_file "$d/local/limited/b.bin" $((LIMIT_MB * MIB / 2)) 11
  {
    CAIRN_HOME=$d/home "$CAIRN" cloud edit c --up-limit $((LIMIT_KB * 2)) --down-limit $((LIMIT_KB * 2)) </dev/null
    CAIRN_HOME=$d/home "$CAIRN" task set bench --up-limit "$LIMIT_KB"
    cairn_connect "$kind" "$d/home2"
    CAIRN_HOME=$d/home2 "$CAIRN" cloud edit c --down-limit $((LIMIT_KB * 2)) </dev/null
    CAIRN_HOME=$d/home2 "$CAIRN" cloud add fetch --connection c --local "$d/fetched" \
      --remote data/limited --direction download-only --transfers "$TRANSFERS" \
      --down-limit "$LIMIT_KB" </dev/null
  } >>"$LOGS/setup.log" 2>&1 || { tail -n 20 "$LOGS/setup.log" >&2; die "cairn limit setup failed (log: $LOGS/setup.log)"; }
  key="limit-up:$kind:cairn"
  CMD=(env "CAIRN_HOME=$d/home" "$CAIRN" run bench)
  run_measured "$key" "$LOGS/$kind-cairn-limit-up.log"
  rate_check "$key" "${R_UP[$key]}"
  key="limit-down:$kind:cairn"
  CMD=(env "CAIRN_HOME=$d/home2" "$CAIRN" run fetch)
  run_measured "$key" "$LOGS/$kind-cairn-limit-down.log"
  rate_check "$key" "${R_DOWN[$key]}"
  cmp -s "$d/local/limited/a.bin" "$d/fetched/a.bin" && cmp -s "$d/local/limited/b.bin" "$d/fetched/b.bin" ||
    { NOTES+=("$key: the fetched files differ from the sent ones"); warn "${NOTES[-1]}"; }
}

rate_check() { # KEY BYTES: the rate in KB/s and its ratio to the cap
  local key=$1 bytes=$2
  R_RATE[$key]=$(awk -v b="$bytes" -v s="${R_WALL[$key]}" 'BEGIN { printf "%.0f", b / s / 1000 }')
  if awk -v r="${R_RATE[$key]}" -v l="$LIMIT_KB" 'BEGIN { exit !(r >= 0.8 * l && r <= 1.2 * l) }'; then
    R_CHECK[$key]=ok
  else
    R_CHECK[$key]=WRONG
    NOTES+=("$key: ${R_RATE[$key]} KB/s is not within 20 % of the cap of $LIMIT_KB KB/s")
    warn "${NOTES[-1]}"
  fi
  log "  $key: ${R_RATE[$key]} KB/s for a cap of $LIMIT_KB KB/s (${R_CHECK[$key]})"
}

run_tool() { # KIND TOOL
  local kind=$1 tool=$2 d=$STATE/$1-$2
  LOG_NAME=$kind-$tool
  rm -rf "$d"
  mkdir -p "$d"
  log "$kind / $tool"
  start_server "$kind" "$d"
  prepare_local "$d"
  "${tool}_setup" "$kind" "$d"
  "${tool}_cmd" "$kind" "$d"
  run_measured "small:$kind:$tool" "$LOGS/$kind-$tool-small.log"
  verify "small:$kind:$tool" "$kind" "$d"
  mv "$d/stage/large" "$d/local/large"
  run_measured "large:$kind:$tool" "$LOGS/$kind-$tool-large.log"
  verify "large:$kind:$tool" "$kind" "$d"
  run_measured "rerun:$kind:$tool" "$LOGS/$kind-$tool-rerun.log"
  verify "rerun:$kind:$tool" "$kind" "$d"
  measure_edit "$kind" "$tool" "$d"
  verify "edit:$kind:$tool" "$kind" "$d"
  [[ $tool != cairn ]] || limit_rows "$kind" "$d"
  local hwm
  hwm=$(awk '/^VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$SERVER_PID/status" 2>/dev/null || true)
  [[ -z $hwm ]] || log "  $kind server peak RSS: $hwm MiB"
  stop_all
  [[ ! -f $d/home/logs/bench.log ]] || cp "$d/home/logs/bench.log" "$LOGS/$kind-cairn-task.log"
  rm -rf "$d" # server data and local copies can be GiBs; logs stay in $LOGS
}

# ----------------------------------------------------------------- report ---
row_label() {
  case $1 in
    small) echo "(1) $SMALL_FILES small files, first sync" ;;
    large) echo "(2) ${LARGE_MB} MiB in 4 large files" ;;
    rerun) echo "(3) re-run, nothing changed" ;;
    edit) echo "(4) 4 KiB edit in a ${PART_MB} MiB file" ;;
  esac
}

ratio() { # ARRAY-NAME KEY-OF-TOOL KEY-OF-CAIRN
  local -n a=$1
  local c=${a[$3]:-} t=${a[$2]:-}
  [[ -n $c && -n $t ]] || { echo "-"; return; }
  awk -v c="$c" -v t="$t" 'BEGIN { if (c + 0 == 0) print (t + 0 == 0 ? "1.00" : "inf"); else printf "%.2f", t / c }'
}

tool_version() {
  case $1 in
    cairn) echo "$("$CAIRN" --version 2>/dev/null | head -n 1) (git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))" ;;
    rclone) rclone version 2>/dev/null | head -n 1 ;;
  esac
}

server_version() {
  case $1 in
    s3) echo "moto $(python3 -c 'import moto; print(moto.__version__)' 2>/dev/null || echo '?')" ;;
    webdav) echo "wsgidav $(wsgidav --version 2>/dev/null | head -n 1), cheroot $(python3 -c 'import cheroot; print(cheroot.__version__)' 2>/dev/null || echo '?')" ;;
  esac
}

TARGETS=()
TARGETS_FAILED=0
check_target() { # KIND ROW
  local c="$2:$1:cairn" r="$2:$1:rclone" v what=()
  [[ -n ${R_WALL[$c]:-} && -n ${R_WALL[$r]:-} ]] || return 0
  awk -v c="${R_WALL[$c]}" -v r="${R_WALL[$r]}" 'BEGIN { exit !(c < r) }' || what+=("slower")
  ((R_REQ[$c] <= R_REQ[$r])) || what+=("more requests")
  ((R_UP[$c] <= R_UP[$r])) || what+=("more bytes sent")
  [[ ${R_CHECK[$c]:-} != WRONG ]] || what+=("cairn's copy is wrong")
  if ((${#what[@]})); then v=missed; TARGETS_FAILED=1; else v=met; fi
  [[ ${R_CHECK[$r]:-} != WRONG ]] || what+=("rclone's copy is wrong: it left the change out")
  TARGETS+=("$1 $(row_label "$2")"$'\t'"$v"$'\t'"$(IFS=,; echo "${what[*]:-ahead on time; requests and bytes}" | sed 's/,/, /g')")
}

print_report() {
  local cpu mem sep kind row t key line
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  sep=$(printf '%.0s-' {1..120})
  echo
  printf '%-7s %-38s %-7s %8s %9s %10s %10s %7s %7s %7s %6s\n' server row tool "wall s" requests "sent MiB" "recv MiB" "time/c" "req/c" "sent/c" check
  echo "$sep"
  {
    echo "# Cloud benchmark results"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(nproc) CPUs ($cpu), $mem RAM, $(uname -sr)"
    echo "- versions:"
    for t in $TOOLS; do echo "  - $(tool_version "$t")"; done
    for kind in $SERVERS; do echo "  - $(server_version "$kind")"; done
    echo "- data: $SMALL_FILES small files of 1-16 KiB (100 per folder); $LARGE_MB MiB in 4 files of $PART_MB MiB (incompressible); row 4 overwrites 4 KiB in the middle of one of them"
    echo "- transfers: $TRANSFERS for both (cairn --transfers $TRANSFERS, direction $DIRECTION, other options default; rclone sync --transfers $TRANSFERS, other options default$(for kind in $SERVERS; do f=$(rclone_flags "$kind"); [[ -z $f ]] || printf '; on %s also %s' "$kind" "$f"; done))"
    echo "- requests and bytes: counted by a TCP proxy in front of the server (HTTP request heads; TCP payload bytes each way); wall time of the client command"
    echo
    echo "- check: after each row the server's files (count and bytes, read straight from the server) match the local folder; after row 4 also the edited file's hash"
    echo
    echo "| server | row | tool | wall s | requests | sent MiB | received MiB | time / cairn | requests / cairn | sent / cairn | check |"
    echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
  } >"$RESULTS"
  for kind in $SERVERS; do
    for row in $ROWS; do
      for t in $TOOLS; do
        key=$row:$kind:$t
        [[ -n ${R_WALL[$key]:-} ]] || continue
        line=("$kind" "$(row_label "$row")" "$t" "$(fmt2 "${R_WALL[$key]}")" "${R_REQ[$key]}"
          "$(mib2 "${R_UP[$key]}")" "$(mib2 "${R_DOWN[$key]}")"
          "$(ratio R_WALL "$key" "$row:$kind:cairn")" "$(ratio R_REQ "$key" "$row:$kind:cairn")"
          "$(ratio R_UP "$key" "$row:$kind:cairn")" "${R_CHECK[$key]:-?}")
        printf '%-7s %-38s %-7s %8s %9s %10s %10s %7s %7s %7s %6s\n' "${line[@]}"
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${line[@]}" >>"$RESULTS"
      done
      check_target "$kind" "$row"
    done
  done
  echo "$sep"
  echo "target: cairn ahead of rclone (less time, no more requests, no more bytes sent) on every row:"
  printf '%s\n' "${TARGETS[@]}" | awk -F'\t' 'NF { printf "  %-50s %-7s %s\n", $1, $2, $3 }'
  {
    echo
    echo "Requests by method:"
    echo
    for kind in $SERVERS; do
      for row in $ROWS; do
        for t in $TOOLS; do
          key=$row:$kind:$t
          [[ -n ${R_METHODS[$key]:-} ]] && echo "- $kind $(row_label "$row"), $t: ${R_METHODS[$key]}"
        done
      done
    done
    echo
    echo "Target: cairn ahead of rclone (less time, no more requests, no more bytes sent) on every row:"
    echo
    printf '%s\n' "${TARGETS[@]}" | awk -F'\t' 'NF { printf "- %s: **%s** (%s)\n", $1, $2, $3 }'
  } >>"$RESULTS"
  if ((${#R_RATE[@]})); then
    echo "traffic control (cairn; cap $LIMIT_KB KB/s, connection limit $((LIMIT_KB * 2)) KB/s; $LIMIT_MB MiB):"
    {
      echo
      echo "Traffic control (cairn only): $LIMIT_MB MiB in 2 files, the task's own cap $LIMIT_KB KB/s inside a connection limit of $((LIMIT_KB * 2)) KB/s; rate = bytes the proxy saw / wall time:"
      echo
      echo "| server | row | wall s | rate KB/s | cap KB/s | rate / cap | within 20 % |"
      echo "| --- | --- | ---: | ---: | ---: | ---: | --- |"
    } >>"$RESULTS"
    for key in $(printf '%s\n' "${!R_RATE[@]}" | sort); do
      local dir=${key%%:*} srv=${key#*:}
      srv=${srv%%:*}
      local ratio_l
      ratio_l=$(awk -v r="${R_RATE[$key]}" -v l="$LIMIT_KB" 'BEGIN { printf "%.3f", r / l }')
      printf '  %-7s %-12s %8s s %8s KB/s  %s of the cap  %s\n' "$srv" "$dir" "$(fmt2 "${R_WALL[$key]}")" "${R_RATE[$key]}" "$ratio_l" "${R_CHECK[$key]}"
      printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$srv" "$dir" "$(fmt2 "${R_WALL[$key]}")" "${R_RATE[$key]}" "$LIMIT_KB" "$ratio_l" "${R_CHECK[$key]}" >>"$RESULTS"
    done
  fi
  if ((${#NOTES[@]})); then
    printf 'problem: %s\n' "${NOTES[@]}"
    printf '\nProblem: %s\n' "${NOTES[@]}" >>"$RESULTS"
  fi
  echo
  log "markdown written to $RESULTS; logs in $LOGS"
}

# ------------------------------------------------------------------- main ---
main() {
  log "tools: $TOOLS; servers: $SERVERS; $SMALL_FILES small files, $LARGE_MB MiB large; $TRANSFERS transfers"
  ensure_packages
  build_cairn
  mkdir -p "$WORK"
  rm -rf "${STATE:?}"
  mkdir -p "$STATE" "$LOGS"
  generate_data
  write_proxy
  local kind t
  for kind in $SERVERS; do
    for t in $TOOLS; do run_tool "$kind" "$t"; done
  done
  print_report
  if [[ $STRICT == 1 ]] && ((TARGETS_FAILED || ${#NOTES[@]})); then die "a target was missed or a check failed (BENCH_STRICT=1)"; fi
}

main "$@"
