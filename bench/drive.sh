#!/usr/bin/env bash
# Drive sync benchmark: cairn (server + two agents) against syncthing (two
# instances, Debian package) in the same run. Measures the propagation delay of
# small edits from computer A to computer B, the initial sync of a folder of
# many small files, and renaming that folder. See bench/README.md.
#
#   bash bench/drive.sh
#   DRIVE_EDITS=20 DRIVE_FILES=1000 DRIVE_TOOLS=syncthing bash bench/drive.sh
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${DRIVE_WORK:-$ROOT/bench/work}
EDITS=${DRIVE_EDITS:-100}
EDIT_FILES=${DRIVE_EDIT_FILES:-5}
EDIT_TIMEOUT=${DRIVE_EDIT_TIMEOUT:-30}
EDIT_GAP_MS=${DRIVE_EDIT_GAP_MS:-200}
POLL_MS=${DRIVE_POLL_MS:-5}
FILES=${DRIVE_FILES:-10000}
TREE_TIMEOUT=${DRIVE_TREE_TIMEOUT:-900}
TOOLS=${DRIVE_TOOLS:-cairn syncthing}
SETTLE_MAX=${DRIVE_SETTLE_MAX:-10}
IDLE_SECS=${DRIVE_IDLE_SECS:-10}
STRICT=${DRIVE_STRICT:-0}
# DRIVE_CAIRN_BIN: use an existing binary and skip the build.
CAIRN=${DRIVE_CAIRN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn}

STATE=$WORK/drive          # recreated on every run
LOGS=$STATE/logs
HELPER=$STATE/helper.py
RESULTS=$WORK/drive-results.md
BENCH_PASSWORD=bench

log() { printf '==> %s\n' "$*"; }
warn() { printf '==> WARNING: %s\n' "$*" >&2; }
die() { printf 'drive bench: error: %s\n' "$*" >&2; exit 1; }

for t in $TOOLS; do
  case $t in cairn | syncthing) ;; *) die "unknown tool '$t' in DRIVE_TOOLS (known: cairn syncthing)" ;; esac
done
for v in EDITS EDIT_FILES EDIT_TIMEOUT FILES TREE_TIMEOUT POLL_MS SETTLE_MAX IDLE_SECS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "DRIVE_$v must be a positive integer, got '${!v}'"
done
[[ $EDIT_GAP_MS =~ ^[0-9]+$ ]] || die "DRIVE_EDIT_GAP_MS must be a non-negative integer, got '$EDIT_GAP_MS'"
has_tool() { [[ " $TOOLS " == *" $1 "* ]]; }

# ---------------------------------------------------------------- cleanup ---
PIDS=()                       # every daemon we started
IPT_CHAIN=CAIRN_DRIVE_BENCH
IPT_ACTIVE=0

alive() { # PID: running (a zombie that is not reaped yet does not count)
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
  local pid
  local i
  # newest first: clients (agents) before the cairn server
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[$i]}"; done
  PIDS=()
}

ipt_remove() {
  iptables -w -D OUTPUT -o lo -p tcp -j "$IPT_CHAIN" 2>/dev/null || true
  iptables -w -F "$IPT_CHAIN" 2>/dev/null || true
  iptables -w -X "$IPT_CHAIN" 2>/dev/null || true
}

cleanup() {
  [[ -z $HELPER_PID ]] || stop_pid "$HELPER_PID"
  stop_all
  if ((IPT_ACTIVE)); then ipt_remove; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ----------------------------------------------------------- dependencies ---
ensure_packages() {
  local -a missing=()
  command -v python3 >/dev/null || missing+=(python3)
  command -v iptables >/dev/null || missing+=(iptables)
  if has_tool syncthing; then command -v syncthing >/dev/null || missing+=(syncthing); fi
  ((${#missing[@]})) || return 0
  [[ $(id -u) == 0 ]] || die "missing packages (${missing[*]}) and not root: install them with apt-get"
  log "installing ${missing[*]}"
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
    die "apt-get install ${missing[*]} failed"
}

build_cairn() {
  has_tool cairn || return 0
  if [[ -n ${DRIVE_CAIRN_BIN:-} ]]; then
    [[ -x $CAIRN ]] || die "DRIVE_CAIRN_BIN=$CAIRN is not executable"
    log "using prebuilt $CAIRN (DRIVE_CAIRN_BIN)"
  else
    log "building cairn (cargo build --release -p cairn)"
    (cd "$ROOT" && cargo build --release -p cairn) || die "cargo build --release -p cairn failed"
    [[ -x $CAIRN ]] || die "build succeeded but $CAIRN is missing"
  fi
  "$CAIRN" drive --help >/dev/null 2>&1 || die "$CAIRN has no 'drive' command (stale binary?)"
}

# ----------------------------------------------------------- python helper ---
# Everything that needs sub-millisecond timing or walks trees runs in-process
# in this helper: edits + polling, data generation, waiting for trees,
# comparing trees, syncthing config and REST readiness checks.
write_helper() {
  cat >"$HELPER" <<'PY'
import hashlib, json, math, os, random, shutil, sys, time, urllib.request
import xml.etree.ElementTree as ET

# Not synced / tool-internal entries, ignored in every tree comparison.
def ignored(name):
    return (name in (".cairn", ".stfolder", ".stversions", ".stignore")
            or (name.startswith(".syncthing.") and name.endswith(".tmp"))
            or name.startswith("~syncthing~"))

def err(*a):
    print(*a, file=sys.stderr, flush=True)

# ---- deterministic data: DIRS x 100 files of 1-4 KiB under TOP
def layout(n):
    rng = random.Random(20240707)
    for i in range(n):
        yield f"d{i // 100:03d}/f{i:05d}.bin", rng.randbytes(rng.randint(1024, 4096))

def expected(n):
    return {rel: len(data) for rel, data in layout(n)}

def cmd_gen(stage, n):
    n = int(n)
    shutil.rmtree(stage, ignore_errors=True)
    for rel, data in layout(n):
        p = os.path.join(stage, rel)
        d = os.path.dirname(p)
        if not os.path.isdir(d):
            os.makedirs(d)
        with open(p, "wb") as f:
            f.write(data)

def scan_sizes(top):
    """relpath -> size of the regular files under top (ignoring tool files)."""
    out, stack = {}, [""]
    while stack:
        rel = stack.pop()
        try:
            it = os.scandir(os.path.join(top, rel))
        except FileNotFoundError:
            continue
        with it:
            for e in it:
                if ignored(e.name):
                    continue
                r = f"{rel}/{e.name}" if rel else e.name
                if e.is_dir(follow_symlinks=False):
                    stack.append(r)
                else:
                    try:
                        out[r] = e.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        pass
    return out

def tree_ok(b, top, absent, want):
    if absent and os.path.lexists(os.path.join(b, absent)):
        return False
    if not os.path.isdir(os.path.join(b, top)):
        return False
    return scan_sizes(os.path.join(b, top)) == want

def wait_tree(t0, b, top, absent, want, timeout):
    """Poll until B/top holds exactly `want` and B/absent is gone. The poll
    interval adapts to the cost of a scan (<= ~20% of one core)."""
    deadline = t0 + timeout
    while True:
        c0 = time.monotonic()
        ok = tree_ok(b, top, absent, want)
        c1 = time.monotonic()
        if ok:
            return c1 - t0
        if c1 > deadline:
            return None
        time.sleep(max(0.01, 4 * (c1 - c0)))

def report(out, key, secs):
    with open(out, "w") as f:
        json.dump({key: secs}, f)
    if secs is None:
        err("   timed out")
        sys.exit(2)

def cmd_initial(stage, a, b, n, timeout, out):
    """Move the generated folder into A (one rename) and time until B has it."""
    want = expected(int(n))
    t0 = time.monotonic()
    os.rename(stage, os.path.join(a, "big"))
    report(out, "secs", wait_tree(t0, b, "big", None, want, float(timeout)))

def cmd_rename(a, b, n, timeout, out):
    want = expected(int(n))
    t0 = time.monotonic()
    os.rename(os.path.join(a, "big"), os.path.join(a, "big-renamed"))
    report(out, "secs", wait_tree(t0, b, "big-renamed", "big", want, float(timeout)))

# ---- propagation of edits A -> B
def read(p):
    try:
        with open(p, "rb") as f:
            return f.read()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return None

def write(p, data):
    with open(p, "wb") as f:  # a plain in-place save: truncate + write
        f.write(data)

def wait_content(p, data, t0, timeout, poll):
    while True:
        if read(p) == data:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            return None
        time.sleep(poll)

def content(i, name):
    rng = random.Random(i * 7919 + 17)
    body = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(rng.randint(200, 400)))
    return f"edit {i} of {name} {time.time_ns()}\n{body}\n".encode()

def pct(sorted_vals, q):
    """Nearest-rank percentile; timeouts are +inf."""
    return sorted_vals[max(0, math.ceil(q * len(sorted_vals)) - 1)]

def cmd_edits(a, b, n, nfiles, timeout, gap_ms, poll_ms, out):
    n, nfiles, timeout = int(n), int(nfiles), float(timeout)
    gap, poll = int(gap_ms) / 1000, int(poll_ms) / 1000
    names = [f"edit-{k:02d}.txt" for k in range(nfiles)]
    # Warm-up (not measured): create the files and wait until B has them all.
    t0 = time.monotonic()
    for k, name in enumerate(names):
        write(os.path.join(a, name), content(-1 - k, name))
    for k, name in enumerate(names):
        data = read(os.path.join(a, name))
        if wait_content(os.path.join(b, name), data, t0, 120, 0.02) is None:
            err(f"   warm-up: {name} did not reach B within 120 s")
            sys.exit(3)
    err(f"   warm-up: {nfiles} files on B after {time.monotonic() - t0:.2f} s")
    time.sleep(1)
    lat = []
    for i in range(n):
        name = names[i % nfiles]
        data = content(i, name)
        write(os.path.join(a, name), data)
        t0 = time.monotonic()  # the save is complete
        dt = wait_content(os.path.join(b, name), data, t0, timeout, poll)
        lat.append(dt)
        if dt is None:
            err(f"   edit {i + 1} ({name}) did not reach B within {timeout:g} s")
        if (i + 1) % 10 == 0 or i + 1 == n:
            done = [x for x in lat if x is not None]
            err(f"   {i + 1}/{n} edits, last {'-' if dt is None else f'{dt:.3f}'} s, "
                f"median so far {sorted(done)[len(done) // 2] if done else float('nan'):.3f} s")
        time.sleep(gap)
    vals = sorted(math.inf if x is None else x for x in lat)
    fin = lambda x: None if math.isinf(x) else x
    res = {"latencies": lat, "timeouts": sum(x is None for x in lat),
           "p50": fin(pct(vals, 0.50)), "p95": fin(pct(vals, 0.95)), "max": fin(vals[-1]),
           "min": fin(vals[0])}
    with open(out, "w") as f:
        json.dump(res, f)

# ---- tree comparison (names, types and content), untimed verification
def digest_tree(top):
    out = {}
    for dirpath, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if not ignored(d)]
        rel = os.path.relpath(dirpath, top)
        for d in dirs:
            out[os.path.normpath(os.path.join(rel, d))] = "dir"
        for f in files:
            if ignored(f):
                continue
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.normpath(os.path.join(rel, f))] = hashlib.sha256(fh.read()).hexdigest()
    return out

def cmd_compare(a, b):
    da, db = digest_tree(a), digest_tree(b)
    if da == db:
        print(f"trees equal ({sum(v != 'dir' for v in da.values())} files)")
        return
    only_a = sorted(set(da) - set(db)); only_b = sorted(set(db) - set(da))
    diff = sorted(k for k in set(da) & set(db) if da[k] != db[k])
    print(f"trees differ: {len(only_a)} only on A, {len(only_b)} only on B, {len(diff)} different")
    for label, lst in (("only on A", only_a), ("only on B", only_b), ("different", diff)):
        for k in lst[:10]:
            print(f"  {label}: {k}")
    sys.exit(1)

# ---- syncthing
def cmd_st_config(home, folder, listen_port, gui_port, other_id, other_port, apikey):
    path = os.path.join(home, "config.xml")
    tree = ET.parse(path)
    root = tree.getroot()
    me = root.find("device")
    my_id = me.get("id")
    # The other device: the configured device defaults, plus its static address.
    other = ET.fromstring(ET.tostring(root.find("defaults/device")))
    other.set("id", other_id)
    other.set("name", "peer")
    other.find("address").text = f"tcp://127.0.0.1:{other_port}"
    root.insert(list(root).index(me) + 1, other)
    gui = root.find("gui")
    gui.find("address").text = f"127.0.0.1:{gui_port}"
    gui.find("apikey").text = apikey
    opts = root.find("options")
    def opt(name, value):
        el = opts.find(name)
        if el is None:
            el = ET.SubElement(opts, name)
        el.text = value
    for name, value in {
        "listenAddress": f"tcp://127.0.0.1:{listen_port}",
        "globalAnnounceEnabled": "false", "localAnnounceEnabled": "false",
        "relaysEnabled": "false", "natEnabled": "false",
        "urAccepted": "-1", "urSeen": "3", "crashReportingEnabled": "false",
        "startBrowser": "false", "autoUpgradeIntervalH": "0",
    }.items():
        opt(name, value)
    # The shared folder: the configured folder defaults, watcher delay 1 s.
    fd = ET.fromstring(ET.tostring(root.find("defaults/folder")))
    for d in fd.findall("device"):
        fd.remove(d)
    fd.set("id", "share"); fd.set("label", "share"); fd.set("path", folder)
    fd.set("type", "sendreceive"); fd.set("fsWatcherEnabled", "true"); fd.set("fsWatcherDelayS", "1")
    for i, dev in enumerate((my_id, other_id)):
        d = ET.Element("device", {"id": dev, "introducedBy": ""})
        ET.SubElement(d, "encryptionPassword").text = ""
        fd.insert(i, d)
    root.insert(list(root).index(gui), fd)
    tree.write(path)

def api(url, key, path):
    req = urllib.request.Request(url + path, headers={"X-API-Key": key})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)

def cmd_st_ready(timeout, *specs):
    """specs: URL,KEY,OTHER_ID ... -> wait until every instance is connected
    to its peer and folder 'share' is idle with nothing to pull."""
    deadline = time.monotonic() + float(timeout)
    last = ""
    while time.monotonic() < deadline:
        states = []
        try:
            for spec in specs:
                url, key, other = spec.split(",")
                conn = api(url, key, "/rest/system/connections")["connections"].get(other, {})
                st = api(url, key, "/rest/db/status?folder=share")
                states.append((conn.get("connected", False), st.get("state"), st.get("needTotalItems", -1)))
        except Exception as e:  # not up yet
            last = repr(e)
            time.sleep(0.2)
            continue
        last = repr(states)
        if all(c and s == "idle" and need == 0 for c, s, need in states):
            print(last)
            return
        time.sleep(0.2)
    err(f"syncthing not ready within {timeout} s: {last}")
    sys.exit(1)

def cmd_st_state(*specs):
    out = []
    for spec in specs:
        url, key, other = spec.split(",")
        st = api(url, key, "/rest/db/status?folder=share")
        conn = api(url, key, "/rest/system/connections")["connections"].get(other, {})
        out.append(f"{st.get('state')} need={st.get('needTotalItems')} connected={conn.get('connected')}")
    print("; ".join(out))

def cmd_stats(path, field):
    v = json.load(open(path)).get(field)
    print("" if v is None else v)

if __name__ == "__main__":
    globals()["cmd_" + sys.argv[1].replace("-", "_")](*sys.argv[2:])
PY
}
H() { python3 "$HELPER" "$@"; }
# Long-running helper calls run in the background and are waited for, so that
# a signal reaches our trap at once (bash defers traps while a foreground
# command runs); cleanup stops the helper.
HELPER_PID=""
HW() {
  local rc=0
  python3 "$HELPER" "$@" &
  HELPER_PID=$!
  wait "$HELPER_PID" || rc=$?
  HELPER_PID=""
  return "$rc"
}

# -------------------------------------------------------------- networking ---
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # PORT PID NAME LOGFILE
  local i
  for ((i = 0; i < 300; i++)); do
    alive "$2" || { tail -n 20 "$4" >&2; die "$3 exited during startup (log: $4)"; }
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  die "$3 did not accept connections on 127.0.0.1:$1 within 30 s (log: $4)"
}

# Bytes on the wire: every TCP packet on lo passes OUTPUT once, so a rule per
# port and direction (--dport / --sport) in our own chain counts the IP bytes
# (headers, TLS and protocol overhead included) of both directions. The rules
# RETURN, so a packet matching two rules (syncthing may dial from its listen
# port to the peer's) is counted once.
NET_OK=0
setup_iptables() {
  if [[ ${DRIVE_NO_IPTABLES:-0} == 1 ]]; then
    log "iptables disabled by DRIVE_NO_IPTABLES=1: bytes will not be measured"
    return
  fi
  ipt_remove # leftovers of an interrupted run
  if iptables -w -N "$IPT_CHAIN" 2>/dev/null &&
    iptables -w -I OUTPUT -o lo -p tcp -j "$IPT_CHAIN" 2>/dev/null; then
    IPT_ACTIVE=1
    NET_OK=1
    log "counting TCP bytes with iptables (chain $IPT_CHAIN on lo)"
  else
    ipt_remove
    warn "iptables unusable here: bytes will not be measured"
  fi
}

net_watch() { # PORT...
  ((NET_OK)) || return 0
  local p
  for p in "$@"; do
    iptables -w -A "$IPT_CHAIN" -p tcp --dport "$p" -j RETURN
    iptables -w -A "$IPT_CHAIN" -p tcp --sport "$p" -j RETURN
  done
}

net_bytes() { # PORT... -> bytes in both directions since net_zero
  ((NET_OK)) || { echo ""; return; }
  iptables -w -L "$IPT_CHAIN" -v -n -x 2>/dev/null | awk -v ports="$*" '
    BEGIN { n = split(ports, p, " "); for (i = 1; i <= n; i++) { want["dpt:" p[i]] = 1; want["spt:" p[i]] = 1 } }
    { for (i = 1; i <= NF; i++) if ($i in want) { sum += $2; break } }
    END { print sum + 0 }'
}

# After a measured change, wait until the traffic settles: no bytes for 2 s,
# but at most DRIVE_SETTLE_MAX s (a tool that polls all the time never goes
# quiet; its background rate is measured separately, see idle_measure).
# Sets NET_WINDOW: seconds since net_zero.
NET_T0=0
NET_WINDOW=0
now() { date +%s.%N; }
net_zero() {
  NET_T0=$(now)
  ((NET_OK)) || return 0
  iptables -w -Z "$IPT_CHAIN"
}
net_settle() { # PORT...
  local prev=-1 cur quiet=0 i
  if ((NET_OK)); then
    for ((i = 0; i < SETTLE_MAX * 4 && quiet < 8; i++)); do
      cur=$(net_bytes "$@")
      if [[ $cur == "$prev" ]]; then quiet=$((quiet + 1)); else quiet=0; fi
      prev=$cur
      sleep 0.25
    done
  fi
  NET_WINDOW=$(awk -v a="$NET_T0" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')
}

# CPU time (clock ticks) used so far by the daemons of the current tool.
cpu_ticks() {
  local pid sum=0 f
  local -a x
  for pid in "${PIDS[@]}"; do
    f=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) || continue
    # fields after "comm": state is [0], utime [11], stime [12]
    read -ra x <<<"$f"
    sum=$((sum + x[11] + x[12]))
  done
  echo "$sum"
}
CLK_TCK=$(getconf CLK_TCK)

# Background with nothing changing, over DRIVE_IDLE_SECS: sets IDLE_BPS
# (bytes/s on the counted ports) and IDLE_CPU (% of one core, all daemons).
IDLE_BPS=""
IDLE_CPU=""
idle_measure() { # PORT...
  local c0 c1 t1
  c0=$(cpu_ticks)
  net_zero
  sleep "$IDLE_SECS"
  c1=$(cpu_ticks)
  t1=$(now)
  IDLE_CPU=$(awk -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v a="$NET_T0" -v b="$t1" 'BEGIN { printf "%.1f", 100 * c / hz / (b - a) }')
  IDLE_BPS=""
  ((NET_OK)) || return 0
  IDLE_BPS=$(awk -v x="$(net_bytes "$@")" -v a="$NET_T0" -v b="$t1" 'BEGIN { printf "%.0f", x / (b - a) }')
}

# ------------------------------------------------------------------ tools ---
# Each tool implements:
#   <tool>_start DIR   two synced computers with empty folders DIR/a, DIR/b,
#                      sets PORTS (the ports whose traffic is counted)
#   <tool>_ready DIR   wait until both sides are idle (after a change)
#   <tool>_state DIR   one line describing the state (for logs)
#   <tool>_stop DIR    stop everything started by _start
PORTS=()

## cairn: one server, two CAIRN_HOMEs with a drive task each, two agents.
cairn_start() {
  local st=$1 port fp c
  mkdir -p "$st/server" "$st/home-a" "$st/home-b" "$st/a" "$st/b"
  port=$(free_port)
  "$CAIRN" server run --data "$st/server" --listen "127.0.0.1:$port" </dev/null >"$LOGS/cairn-server.log" 2>&1 &
  PIDS+=($!)
  wait_port "$port" "$!" "cairn server" "$LOGS/cairn-server.log"
  PORTS=("$port")
  {
    printf '%s\n' "$BENCH_PASSWORD" | "$CAIRN" server user add bench --password-stdin --data "$st/server"
    "$CAIRN" server folder add share --data "$st/server" </dev/null
    "$CAIRN" server folder grant share bench --access rw --data "$st/server" </dev/null
  } >>"$LOGS/cairn-setup.log" 2>&1 || { tail -n 20 "$LOGS/cairn-setup.log" >&2; die "cairn server setup failed (log: $LOGS/cairn-setup.log)"; }
  fp=$("$CAIRN" server fingerprint --data "$st/server" </dev/null 2>>"$LOGS/cairn-setup.log" | awk 'NF { l = $0 } END { print l }')
  [[ -n $fp ]] || die "cairn server fingerprint printed nothing (log: $LOGS/cairn-setup.log)"
  for c in a b; do
    {
      printf '%s\n' "$BENCH_PASSWORD" | CAIRN_HOME=$st/home-$c "$CAIRN" connect "https://127.0.0.1:$port" \
        --user bench --password-stdin --fingerprint "$fp" --name srv
      CAIRN_HOME=$st/home-$c "$CAIRN" drive add d --local "$st/$c" --connection srv --folder share \
        --computer "${c^^}" </dev/null
    } >>"$LOGS/cairn-setup.log" 2>&1 || { tail -n 20 "$LOGS/cairn-setup.log" >&2; die "cairn client setup failed (log: $LOGS/cairn-setup.log)"; }
  done
  for c in a b; do
    CAIRN_HOME=$st/home-$c "$CAIRN" agent </dev/null >"$LOGS/cairn-agent-$c.log" 2>&1 &
    PIDS+=($!)
  done
  sleep 1
  for c in 1 2; do
    alive "${PIDS[$c]}" || { tail -n 20 "$LOGS/cairn-agent-"*.log >&2; die "a cairn agent exited at startup (logs: $LOGS)"; }
  done
}
# The agents have no idle signal we can query; the measurements themselves wait
# for B's tree, and net_settle waits for the traffic to stop.
cairn_ready() { :; }
cairn_state() {
  local a=no b=no
  alive "${PIDS[1]}" && a=yes
  alive "${PIDS[2]}" && b=yes
  echo "agent A alive: $a, agent B alive: $b"
}
cairn_stop() {
  local st=$1 c
  stop_all
  for c in a b; do
    [[ -f $st/home-$c/logs/d.log ]] && cp "$st/home-$c/logs/d.log" "$LOGS/cairn-$c-d.log"
  done
  return 0
}

## syncthing: two instances (homes st/home-a, st/home-b), static addresses,
## one shared sendreceive folder "share", watcher delay 1 s, no discovery,
## relays, NAT or usage reporting.
ST_SPECS=()
syncthing_start() {
  local st=$1 c id_a id_b pa pb ga gb key_a key_b
  mkdir -p "$st/a/.stfolder" "$st/b/.stfolder"
  for c in a b; do
    STNODEFAULTFOLDER=1 syncthing generate --home "$st/home-$c" --no-default-folder --skip-port-probing \
      >>"$LOGS/syncthing-setup.log" 2>&1 || { tail -n 20 "$LOGS/syncthing-setup.log" >&2; die "syncthing generate failed"; }
  done
  id_a=$(syncthing serve --device-id --home "$st/home-a")
  id_b=$(syncthing serve --device-id --home "$st/home-b")
  pa=$(free_port) pb=$(free_port) ga=$(free_port) gb=$(free_port)
  key_a=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n') key_b=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  H st-config "$st/home-a" "$st/a" "$pa" "$ga" "$id_b" "$pb" "$key_a"
  H st-config "$st/home-b" "$st/b" "$pb" "$gb" "$id_a" "$pa" "$key_b"
  PORTS=("$pa" "$pb")
  for c in a b; do
    STNODEFAULTFOLDER=1 STNOUPGRADE=1 syncthing serve --home "$st/home-$c" --no-browser --no-restart \
      --no-upgrade --logflags=7 </dev/null >"$LOGS/syncthing-$c.log" 2>&1 &
    PIDS+=($!)
  done
  wait_port "$ga" "${PIDS[0]}" "syncthing A" "$LOGS/syncthing-a.log"
  wait_port "$gb" "${PIDS[1]}" "syncthing B" "$LOGS/syncthing-b.log"
  ST_SPECS=("http://127.0.0.1:$ga,$key_a,$id_b" "http://127.0.0.1:$gb,$key_b,$id_a")
  log "  syncthing A $id_a (sync port $pa, API $ga), B $id_b (sync port $pb, API $gb)"
  HW st-ready 120 "${ST_SPECS[@]}" >>"$LOGS/syncthing-setup.log" ||
    die "syncthing instances did not connect (logs: $LOGS/syncthing-*.log)"
  log "  syncthing: connected, folder idle on both sides"
}
syncthing_ready() { HW st-ready 300 "${ST_SPECS[@]}" >/dev/null || warn "syncthing did not become idle"; }
syncthing_state() { H st-state "${ST_SPECS[@]}" 2>&1 || true; }
syncthing_stop() { stop_all; }

# ---------------------------------------------------------------- measure ---
declare -A R        # R[key:tool] = value ("" = not measured)
declare -A NOTE     # NOTE[tool] = problems seen

note() { NOTE[$1]="${NOTE[$1]:-}${NOTE[$1]:+; }$2"; warn "$1: $2"; }

verify() { # TOOL DIR PHASE
  local out
  if HW compare "$2/a" "$2/b" >"$LOGS/compare.out" 2>&1; then
    out=$(<"$LOGS/compare.out")
    log "  check after $3: $out"
  else
    sed 's/^/    /' "$LOGS/compare.out" >&2
    note "$1" "A and B differ after $3"
  fi
}

above_idle() { # BYTES RATE WINDOW -> bytes minus RATE * WINDOW (not below 0)
  [[ -n $1 && -n $2 ]] || { echo ""; return; }
  awk -v b="$1" -v r="$2" -v w="$3" 'BEGIN { x = b - r * w; printf "%.0f", x < 0 ? 0 : x }'
}

run_tool() { # TOOL
  local tool=$1 st=$STATE/$1 rc
  rm -rf "$st"
  mkdir -p "$st"
  log "$tool: starting"
  "${tool}_start" "$st"
  net_watch "${PORTS[@]}"

  # 1. propagation of single edits
  log "$tool: propagation, $EDITS edits of one small file on A (rotating over $EDIT_FILES files)"
  net_zero
  rc=0
  HW edits "$st/a" "$st/b" "$EDITS" "$EDIT_FILES" "$EDIT_TIMEOUT" "$EDIT_GAP_MS" "$POLL_MS" "$LOGS/$tool-edits.json" || rc=$?
  if ((rc == 0)); then
    net_settle "${PORTS[@]}"
    R[edit_bytes:$tool]=$(net_bytes "${PORTS[@]}")
    for k in p50 p95 max timeouts; do R[$k:$tool]=$(H stats "$LOGS/$tool-edits.json" "$k"); done
    [[ ${R[timeouts:$tool]} == 0 ]] || note "$tool" "${R[timeouts:$tool]} of $EDITS edits did not reach B within ${EDIT_TIMEOUT} s"
    log "$tool: p50 $(fmt s "${R[p50:$tool]}") s, p95 $(fmt s "${R[p95:$tool]}") s, max $(fmt s "${R[max:$tool]}") s, ${R[timeouts:$tool]} timeouts, $(fmt k "${R[edit_bytes:$tool]}") KiB sent"
  else
    note "$tool" "propagation warm-up failed: the first files never reached B (state: $("${tool}_state" "$st"))"
  fi
  "${tool}_ready" "$st"
  verify "$tool" "$st" "the edits"
  idle_measure "${PORTS[@]}"
  R[idle_small:$tool]=$IDLE_BPS R[cpu_small:$tool]=$IDLE_CPU
  log "$tool: idle with $EDIT_FILES files: ${IDLE_BPS:-?} bytes/s on the wire, daemons use ${IDLE_CPU}% of a core"

  # 2. initial sync of FILES small files, moved into A in one rename
  log "$tool: initial sync of $FILES files (generated outside, moved into A as big/)"
  HW gen "$STATE/stage-$tool" "$FILES"
  sync
  net_zero
  rc=0
  HW initial "$STATE/stage-$tool" "$st/a" "$st/b" "$FILES" "$TREE_TIMEOUT" "$LOGS/$tool-initial.json" || rc=$?
  if ((rc == 0)); then
    R[init_done:$tool]=$(net_bytes "${PORTS[@]}")
    R[init_secs:$tool]=$(H stats "$LOGS/$tool-initial.json" secs)
    "${tool}_ready" "$st"
    net_settle "${PORTS[@]}"
    R[init_bytes:$tool]=$(net_bytes "${PORTS[@]}")
    log "$tool: initial sync complete on B after $(fmt s "${R[init_secs:$tool]}") s; $(fmt m "${R[init_bytes:$tool]}") MiB sent in ${NET_WINDOW} s"
    verify "$tool" "$st" "the initial sync"
    idle_measure "${PORTS[@]}"
    R[idle_big:$tool]=$IDLE_BPS R[cpu_big:$tool]=$IDLE_CPU
    log "$tool: idle with $((FILES + EDIT_FILES)) files: ${IDLE_BPS:-?} bytes/s on the wire, daemons use ${IDLE_CPU}% of a core"
  else
    note "$tool" "B did not get all $FILES files of big/ within $TREE_TIMEOUT s (state: $("${tool}_state" "$st"))"
  fi

  # 3. rename the folder on A
  if [[ -n ${R[init_secs:$tool]:-} ]]; then
    log "$tool: mv big big-renamed on A"
    net_zero
    rc=0
    HW rename "$st/a" "$st/b" "$FILES" "$TREE_TIMEOUT" "$LOGS/$tool-rename.json" || rc=$?
    if ((rc == 0)); then
      R[ren_done:$tool]=$(net_bytes "${PORTS[@]}")
      R[ren_secs:$tool]=$(H stats "$LOGS/$tool-rename.json" secs)
      "${tool}_ready" "$st"
      net_settle "${PORTS[@]}"
      R[ren_bytes:$tool]=$(net_bytes "${PORTS[@]}")
      R[ren_net:$tool]=$(above_idle "${R[ren_bytes:$tool]}" "${R[idle_big:$tool]}" "$NET_WINDOW")
      log "$tool: rename complete on B after $(fmt s "${R[ren_secs:$tool]}") s; $(fmt k "${R[ren_bytes:$tool]}") KiB sent in ${NET_WINDOW} s"
      verify "$tool" "$st" "the rename"
    else
      note "$tool" "B did not show big-renamed/ complete and big/ gone within $TREE_TIMEOUT s (state: $("${tool}_state" "$st"))"
    fi
  fi

  log "$tool: stopping"
  "${tool}_stop" "$st"
}

# ----------------------------------------------------------------- report ---
fmt() { # KIND VALUE: s = seconds, k = KiB, m = MiB, n = count
  local v=$2
  [[ -n $v ]] || { echo "-"; return; }
  case $1 in
    s) awk -v x="$v" 'BEGIN { printf "%.3f", x }' ;;
    k) awk -v x="$v" 'BEGIN { printf "%.1f", x / 1024 }' ;;
    m) awk -v x="$v" 'BEGIN { printf "%.2f", x / 1048576 }' ;;
    n | b) echo "$v" ;;
  esac
}

ratio() { # KEY
  local c=${R[$1:cairn]:-} s=${R[$1:syncthing]:-}
  [[ -n $c && -n $s ]] || { echo "-"; return; }
  awk -v c="$c" -v s="$s" 'BEGIN { if (c + 0 == 0) print "-"; else printf "%.2f", s / c }'
}

tool_version() {
  case $1 in
    cairn) "$CAIRN" --version 2>/dev/null | head -n 1 ;;
    syncthing) syncthing --version | head -n 1 ;;
  esac
}

# key | kind | label
ROWS=(
  "p50|s|propagation p50 (s)"
  "p95|s|propagation p95 (s)"
  "max|s|propagation max (s)"
  "timeouts|n|edits not arrived within ${EDIT_TIMEOUT} s"
  "edit_bytes|k|sent during the $EDITS edits (KiB)"
  "init_secs|s|initial sync of $FILES files (s)"
  "init_done|m|initial sync sent until B complete (MiB)"
  "init_bytes|m|initial sync sent until quiet (MiB)"
  "ren_secs|s|rename folder of $FILES files (s)"
  "ren_done|k|rename sent until B complete (KiB)"
  "ren_bytes|k|rename sent until quiet (KiB)"
  "ren_net|k|rename sent until quiet minus idle (KiB)"
  "idle_small|b|idle traffic, $EDIT_FILES files (bytes/s)"
  "idle_big|b|idle traffic, $((FILES + EDIT_FILES)) files (bytes/s)"
  "cpu_small|n|idle CPU, $EDIT_FILES files (% of a core)"
  "cpu_big|n|idle CPU, $((FILES + EDIT_FILES)) files (% of a core)"
)

print_report() {
  local cpu mem row key kind label c s r sep verdict detail t
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  sep=$(printf '%.0s-' {1..82})

  c=${R[p50:cairn]:-}
  if ! has_tool cairn; then
    verdict=n/a detail="cairn not in DRIVE_TOOLS"
  elif [[ -z $c ]]; then
    verdict=missed detail="no p50 (edits did not arrive)"
  elif awk -v c="$c" 'BEGIN { exit !(c < 1) }'; then
    verdict=met detail="p50 $(fmt s "$c") s"
  else
    verdict=missed detail="p50 $(fmt s "$c") s"
  fi

  echo
  printf '%-40s %12s %12s %12s\n' measurement cairn syncthing "ratio s/c"
  echo "$sep"
  {
    echo "# Drive sync benchmark results"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(nproc) CPUs ($cpu), $mem RAM, $(uname -sr)"
    echo "- versions:"
    for t in $TOOLS; do echo "  - $(tool_version "$t")"; done
    echo "- propagation: $EDITS in-place saves of one file (${EDIT_FILES} files in rotation, 200-400 bytes each) on A;" \
      "time from the end of the save until B's copy has exactly the new content (polled every $POLL_MS ms);" \
      "${EDIT_GAP_MS} ms between edits; nearest-rank percentiles"
    echo "- tree: $FILES files of 1-4 KiB in $(((FILES + 99) / 100)) folders, generated outside and moved into A as big/," \
      "then renamed on A with one rename(2) to big-renamed/; time until B's tree is complete (names and sizes)"
    echo "- bytes: $( ((NET_OK)) && echo "IP bytes in both directions on lo for the cairn server port / the two syncthing sync ports (iptables), from the change until B was complete, and until the traffic had been quiet for 2 s (at most ${SETTLE_MAX} s more); \"minus idle\" subtracts the idle rate measured just before, times that window" || echo "not measured (no iptables)")"
    echo "- idle: traffic and CPU (all daemons: cairn server + agents / both syncthing instances) over ${IDLE_SECS} s with nothing changing, after the edits and after the initial sync"
    echo "- syncthing: two instances, static tcp://127.0.0.1 addresses, discovery/relays/NAT/usage reporting off, folder sendreceive with fsWatcherDelayS=1, other settings default"
    echo "- cairn: one server and two agents (cairn agent) on 127.0.0.1"
    echo
    echo "| measurement | cairn | syncthing | syncthing / cairn |"
    echo "| --- | ---: | ---: | ---: |"
  } >"$RESULTS"
  for row in "${ROWS[@]}"; do
    IFS='|' read -r key kind label <<<"$row"
    c=$(fmt "$kind" "${R[$key:cairn]:-}")
    s=$(fmt "$kind" "${R[$key:syncthing]:-}")
    # a percentile that is a timeout has no value but the edits ran
    [[ $key != p* || -z ${R[timeouts:cairn]:-} || -n ${R[$key:cairn]:-} ]] || c=timeout
    [[ $key != p* || -z ${R[timeouts:syncthing]:-} || -n ${R[$key:syncthing]:-} ]] || s=timeout
    [[ $key == max && -n ${R[timeouts:cairn]:-} && -z ${R[max:cairn]:-} ]] && c=timeout
    [[ $key == max && -n ${R[timeouts:syncthing]:-} && -z ${R[max:syncthing]:-} ]] && s=timeout
    if [[ $key == timeouts ]]; then r="-"; else r=$(ratio "$key"); fi
    printf '%-40s %12s %12s %12s\n' "$label" "$c" "$s" "$r"
    printf '| %s | %s | %s | %s |\n' "$label" "$c" "$s" "$r" >>"$RESULTS"
  done
  echo "$sep"
  echo "target: cairn propagation p50 under 1 s: $verdict ($detail)"
  {
    echo
    echo "Target: cairn propagation p50 under 1 s: **$verdict** ($detail)"
  } >>"$RESULTS"
  for t in $TOOLS; do
    if [[ -n ${NOTE[$t]:-} ]]; then
      echo "problems ($t): ${NOTE[$t]}"
      printf '\nProblems (%s): %s\n' "$t" "${NOTE[$t]}" >>"$RESULTS"
    fi
  done
  echo
  log "markdown written to $RESULTS; logs in $LOGS"
  [[ $verdict != missed ]] || TARGET_MISSED=1
}

# ------------------------------------------------------------------- main ---
TARGET_MISSED=0
main() {
  log "tools: $TOOLS; $EDITS edits; $FILES files"
  ensure_packages
  build_cairn
  mkdir -p "$WORK"
  rm -rf "${STATE:?}"
  mkdir -p "$STATE" "$LOGS"
  write_helper
  setup_iptables
  local t
  for t in $TOOLS; do run_tool "$t"; done
  print_report
  if [[ $STRICT == 1 ]] && ((TARGET_MISSED)); then die "the target was missed (DRIVE_STRICT=1)"; fi
}

main "$@"
