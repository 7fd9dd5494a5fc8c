#!/usr/bin/env bash
# Backup benchmark: cairn against rsync (daemon on 127.0.0.1), restic and borg
# (local repositories). Builds cairn, generates deterministic data, runs four
# scenarios and prints a table. See bench/README.md for what is measured.
#
#   bash bench/backup.sh
#   BENCH_LARGE_MB=64 BENCH_SMALL_FILES=500 BENCH_TOOLS="rsync restic" bash bench/backup.sh
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_WORK:-$ROOT/bench/work}
LARGE_MB=${BENCH_LARGE_MB:-1024}
SMALL_FILES=${BENCH_SMALL_FILES:-20000}
TOOLS=${BENCH_TOOLS:-cairn rsync restic borg}
SCENARIOS=${BENCH_SCENARIOS:-a b c d}
STRICT=${BENCH_STRICT:-0}
# BENCH_CAIRN_BIN: use an existing binary and skip the build.
CAIRN=${BENCH_CAIRN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn}

DATA=$WORK/data        # generated once, reused while parameters match
EDIT=$WORK/edit        # scenario (d) source, recreated per tool (it gets modified)
STATE=$WORK/state      # per tool/scenario repositories, servers, client homes
LOGS=$WORK/logs
MIB=1048576
# Fixed mtime for generated data so metadata is as reproducible as content.
DATA_MTIME=@1577836800
BENCH_PASSWORD=bench

log() { printf '==> %s\n' "$*"; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

for t in $TOOLS; do
  case $t in cairn | rsync | restic | borg) ;; *) die "unknown tool '$t' in BENCH_TOOLS (known: cairn rsync restic borg)" ;; esac
done
for s in $SCENARIOS; do
  case $s in a | b | c | d) ;; *) die "unknown scenario '$s' in BENCH_SCENARIOS (known: a b c d)" ;; esac
done
[[ $LARGE_MB =~ ^[1-9][0-9]*$ ]] || die "BENCH_LARGE_MB must be a positive integer, got '$LARGE_MB'"
[[ $SMALL_FILES =~ ^[1-9][0-9]*$ ]] || die "BENCH_SMALL_FILES must be a positive integer, got '$SMALL_FILES'"
has_tool() { [[ " $TOOLS " == *" $1 "* ]]; }

# ---------------------------------------------------------------- cleanup ---
CAIRN_SERVER_PID=""
RSYNC_PID=""
IPT_CHAIN=CAIRN_BENCH
IPT_ACTIVE=0

stop_pid() {
  local pid=$1
  [[ -n $pid ]] || return 0
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

ipt_remove() {
  iptables -w -D OUTPUT -o lo -p tcp -j "$IPT_CHAIN" 2>/dev/null || true
  iptables -w -F "$IPT_CHAIN" 2>/dev/null || true
  iptables -w -X "$IPT_CHAIN" 2>/dev/null || true
}

cleanup() {
  stop_pid "$CAIRN_SERVER_PID"
  stop_pid "$RSYNC_PID"
  if ((IPT_ACTIVE)); then ipt_remove; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ----------------------------------------------------------- dependencies ---
ensure_packages() {
  local -a missing=()
  command -v python3 >/dev/null || missing+=(python3)
  command -v openssl >/dev/null || missing+=(openssl)
  [[ -x /usr/bin/time ]] || missing+=(time)
  if has_tool rsync || has_tool cairn; then
    command -v iptables >/dev/null || missing+=(iptables)
  fi
  if has_tool rsync; then command -v rsync >/dev/null || missing+=(rsync); fi
  if has_tool restic; then command -v restic >/dev/null || missing+=(restic); fi
  if has_tool borg; then command -v borg >/dev/null || missing+=(borgbackup); fi
  ((${#missing[@]})) || return 0
  [[ $(id -u) == 0 ]] || die "missing packages (${missing[*]}) and not root: install them with apt-get"
  log "installing ${missing[*]}"
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
    die "apt-get install ${missing[*]} failed"
}

build_cairn() {
  has_tool cairn || return 0
  if [[ -n ${BENCH_CAIRN_BIN:-} ]]; then
    [[ -x $CAIRN ]] || die "BENCH_CAIRN_BIN=$CAIRN is not executable"
    log "using prebuilt $CAIRN (BENCH_CAIRN_BIN)"
    return
  fi
  log "building cairn (cargo build --release -p cairn)"
  (cd "$ROOT" && cargo build --release -p cairn) || die "cargo build --release -p cairn failed"
  [[ -x $CAIRN ]] || die "build succeeded but $CAIRN is missing"
}

# ------------------------------------------------------------------- data ---
# Large files: AES-128-CTR keystream (incompressible, deterministic, ~GB/s).
# Each file gets its own key: distinct IVs with one key would give streams that
# are shifted copies of each other, which deduplicating tools would exploit.
gen_large_file() { # PATH BYTES INDEX
  local key
  key=$(printf 'cairn-bench-large-%s' "$3" | sha256sum | cut -c1-32)
  head -c "$2" /dev/zero |
    openssl enc -aes-128-ctr -nosalt -K "$key" -iv 00000000000000000000000000000000 >"$1"
  [[ $(stat -c %s "$1") == "$2" ]] || die "generating $1 failed"
}

generate_data() {
  local stamp="gen-v2 large_mb=$LARGE_MB small_files=$SMALL_FILES"
  if [[ -f $DATA/.stamp && $(<"$DATA/.stamp") == "$stamp" ]]; then
    log "data up to date in $DATA ($stamp)"
    return
  fi
  log "generating data in $DATA ($stamp)"
  local t0=$SECONDS
  rm -rf "$DATA"
  mkdir -p "$DATA/full/large" "$DATA/full/small"
  # Four files that add up to exactly LARGE_MB MiB.
  local part=$((LARGE_MB * MIB / 4)) i
  for i in 0 1 2 3; do gen_large_file "$DATA/full/large/part-$i.bin" "$part" "$i"; done

  # Small files (1-16 KiB, 100 per leaf directory, two levels) and the 4 KiB
  # patch used by scenario (d), from a seeded PRNG.
  python3 - "$DATA/full/small" "$SMALL_FILES" "$DATA/patch-4k.bin" <<'PY'
import os, random, sys
root, count, patch = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rng = random.Random(20240601)
for i in range(count):
    d = os.path.join(root, f"{i // 1000:03d}", f"{i // 100 % 10:02d}")
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}.bin"), "wb") as f:
        f.write(rng.randbytes(rng.randint(1024, 16384)))
with open(patch, "wb") as f:
    f.write(random.Random(4096).randbytes(4096))
PY
  find "$DATA/full" -exec touch -h -d "$DATA_MTIME" {} +
  # borg leaves the files sharing the newest ctime out of its files cache
  # (it can't tell whether they changed later in the same clock tick). The
  # batched touch above gives hundreds of files, the large ones included, the
  # same ctime tick, so a re-run would re-read them. Give that newest ctime to
  # a single empty file alone, as real data would have it.
  sleep 0.1
  touch -d "$DATA_MTIME" "$DATA/full/.newest"
  touch -d "$DATA_MTIME" "$DATA/full"
  printf '%s\n' "$stamp" >"$DATA/.stamp"
  log "data generated in $((SECONDS - t0)) s ($(du -sh "$DATA/full" | cut -f1))"
}

# (d) works on one LARGE_MB file. It is the large parts concatenated, rebuilt
# before each tool so every tool sees the same original and the same edit.
prepare_edit_file() {
  rm -rf "$EDIT"
  mkdir -p "$EDIT"
  cat "$DATA"/full/large/part-{0,1,2,3}.bin >"$EDIT/big.bin"
  touch -d "$DATA_MTIME" "$EDIT/big.bin" "$EDIT"
}

apply_edit() {
  local size blocks
  size=$(stat -c %s "$EDIT/big.bin")
  blocks=$((size / 2 / 4096))
  dd if="$DATA/patch-4k.bin" of="$EDIT/big.bin" bs=4096 seek="$blocks" count=1 conv=notrunc status=none
}

scenario_source() {
  case $1 in
    a) echo "$DATA/full/large" ;;
    b) echo "$DATA/full/small" ;;
    c) echo "$DATA/full" ;;
    d) echo "$EDIT" ;;
  esac
}

scenario_label() {
  case $1 in
    a) echo "(a) first backup, ${LARGE_MB} MiB large" ;;
    b) echo "(b) first backup, ${SMALL_FILES} small" ;;
    c) echo "(c) re-run, nothing changed" ;;
    d) echo "(d) 4 KiB edit in ${LARGE_MB} MiB file" ;;
  esac
}

# -------------------------------------------------------------- networking ---
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # PORT PID NAME LOGFILE
  local i
  for ((i = 0; i < 300; i++)); do
    kill -0 "$2" 2>/dev/null || { tail -n 20 "$4" >&2; die "$3 exited during startup (log: $4)"; }
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  die "$3 did not accept connections on 127.0.0.1:$1 within 30 s (log: $4)"
}

# Bytes sent by the network tools are counted as IP bytes going to the server
# port on the loopback (client -> server direction only), so TLS, HTTP and
# protocol overhead are included. Without working iptables we fall back to the
# number the tool itself reports.
NET_METHOD=tool
setup_iptables() {
  has_tool cairn || has_tool rsync || return 0
  if [[ ${BENCH_NO_IPTABLES:-0} == 1 ]]; then
    log "iptables disabled by BENCH_NO_IPTABLES=1: using tool-reported bytes for cairn/rsync"
    return
  fi
  ipt_remove # leftovers of an interrupted run
  if iptables -w -N "$IPT_CHAIN" 2>/dev/null &&
    iptables -w -I OUTPUT -o lo -p tcp -j "$IPT_CHAIN" 2>/dev/null; then
    IPT_ACTIVE=1
    NET_METHOD=iptables
    log "counting TCP bytes with iptables (chain $IPT_CHAIN on lo)"
  else
    ipt_remove
    log "iptables unusable here: using tool-reported bytes for cairn/rsync"
  fi
}

net_watch() { # PORT: add a counting rule for traffic to PORT
  [[ $NET_METHOD == iptables ]] || return 0
  iptables -w -A "$IPT_CHAIN" -p tcp --dport "$1" -j RETURN
}

net_zero() { [[ $NET_METHOD != iptables ]] || iptables -w -Z "$IPT_CHAIN"; }

net_bytes() { # PORT -> bytes counted since net_zero
  iptables -w -L "$IPT_CHAIN" -v -n -x 2>/dev/null |
    awk -v want="dpt:$1" '{ for (i = 1; i <= NF; i++) if ($i == want) { print $2; exit } }'
}

# ------------------------------------------------------------------ tools ---
# Each tool implements:
#   <tool>_fresh STATEDIR SRC   new, empty destination (untimed)
#   <tool>_cmd   STATEDIR SRC   sets CMD to the backup command
#   <tool>_sent_begin STATEDIR / <tool>_sent_end STATEDIR LOG -> SENT bytes
#   <tool>_reported LOG         what the tool says it sent/stored (for the log)
#   <tool>_finish STATEDIR      stop anything started by _fresh
CMD=()

## cairn: one fresh server per scenario, fresh CAIRN_HOME, same home for re-runs.
CAIRN_PORT=""
cairn_fresh() {
  local st=$1 src=$2 fp
  mkdir -p "$st/server" "$st/client"
  CAIRN_PORT=$(free_port)
  "$CAIRN" server run --data "$st/server" --listen "127.0.0.1:$CAIRN_PORT" \
    </dev/null >"$st/server.log" 2>&1 &
  CAIRN_SERVER_PID=$!
  wait_port "$CAIRN_PORT" "$CAIRN_SERVER_PID" "cairn server" "$st/server.log"
  net_watch "$CAIRN_PORT"
  {
    printf '%s\n' "$BENCH_PASSWORD" | "$CAIRN" server user add bench --password-stdin --data "$st/server"
    "$CAIRN" server folder add backup --data "$st/server" </dev/null
    "$CAIRN" server folder grant backup bench --access rw --data "$st/server" </dev/null
  } >>"$st/setup.log" 2>&1 || { tail -n 20 "$st/setup.log" >&2; die "cairn server setup failed (log: $st/setup.log)"; }
  fp=$("$CAIRN" server fingerprint --data "$st/server" </dev/null 2>>"$st/setup.log" | awk 'NF { l = $0 } END { print l }') ||
    die "cairn server fingerprint failed (log: $st/setup.log)"
  [[ -n $fp ]] || die "cairn server fingerprint printed nothing"
  {
    printf '%s\n' "$BENCH_PASSWORD" | CAIRN_HOME=$st/client "$CAIRN" connect "https://127.0.0.1:$CAIRN_PORT" \
      --user bench --password-stdin --fingerprint "$fp" --name srv
    CAIRN_HOME=$st/client "$CAIRN" backup add bench --local "$src" --connection srv --folder backup </dev/null
  } >>"$st/setup.log" 2>&1 || { tail -n 20 "$st/setup.log" >&2; die "cairn client setup failed (log: $st/setup.log)"; }
}
cairn_cmd() { CMD=(env "CAIRN_HOME=$1/client" "$CAIRN" run bench --once); }
cairn_reported() { grep -oE 'sent [0-9]+ bytes' "$1" | tail -n 1 | grep -oE '[0-9]+' || true; }
cairn_sent_begin() { net_zero; }
cairn_sent_end() {
  if [[ $NET_METHOD == iptables ]]; then SENT=$(net_bytes "$CAIRN_PORT"); else SENT=$(cairn_reported "$2"); fi
  [[ -n $SENT ]] || die "no 'sent N bytes' in cairn's output (log: $2)"
}
cairn_finish() {
  local hwm
  hwm=$(awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$CAIRN_SERVER_PID/status" 2>/dev/null || true)
  [[ -z $hwm ]] || log "  cairn server peak RSS: $hwm MiB"
  stop_pid "$CAIRN_SERVER_PID"
  CAIRN_SERVER_PID=""
}

## rsync: one daemon for the whole run; module root is $STATE, so each
## scenario's fresh destination is $STATE/rsync-<scenario>/dest.
RSYNC_PORT=""
rsync_start_daemon() {
  [[ -z $RSYNC_PID ]] || return 0
  local dir=$WORK/rsyncd
  mkdir -p "$dir"
  RSYNC_PORT=$(free_port)
  cat >"$dir/rsyncd.conf" <<EOF
use chroot = no
uid = $(id -u)
gid = $(id -g)
log file = $dir/rsyncd.log

[bench]
    path = $STATE
    read only = false
    numeric ids = yes
EOF
  rsync --daemon --no-detach --config="$dir/rsyncd.conf" --address=127.0.0.1 --port="$RSYNC_PORT" \
    </dev/null >"$dir/stdout.log" 2>&1 &
  RSYNC_PID=$!
  wait_port "$RSYNC_PORT" "$RSYNC_PID" "rsync daemon" "$dir/stdout.log"
  net_watch "$RSYNC_PORT"
}
rsync_fresh() { rsync_start_daemon; }
rsync_cmd() {
  # --no-whole-file: be explicit that the delta-transfer algorithm is used.
  CMD=(rsync -a --no-whole-file --stats "$2/" "rsync://127.0.0.1:$RSYNC_PORT/bench/$(basename "$1")/dest/")
}
rsync_reported() { awk -F': ' '/^Total bytes sent:/ { gsub(/[,.]/, "", $2); print $2 + 0 }' "$1" | tail -n 1; }
rsync_sent_begin() { net_zero; }
rsync_sent_end() {
  if [[ $NET_METHOD == iptables ]]; then SENT=$(net_bytes "$RSYNC_PORT"); else SENT=$(rsync_reported "$2"); fi
  [[ -n $SENT ]] || die "could not determine bytes sent by rsync (log: $2)"
}
rsync_finish() { :; }

## restic and borg: local repositories; "sent" is the repository's growth.
repo_bytes() { du -sb "$1" | cut -f1; }
REPO_BASE=0

restic_fresh() {
  env "RESTIC_PASSWORD=$BENCH_PASSWORD" restic -r "$1/repo" --cache-dir "$1/cache" init </dev/null >"$1/setup.log" 2>&1 ||
    { tail -n 20 "$1/setup.log" >&2; die "restic init failed (log: $1/setup.log)"; }
}
restic_cmd() { CMD=(env "RESTIC_PASSWORD=$BENCH_PASSWORD" restic -r "$1/repo" --cache-dir "$1/cache" backup "$2"); }
restic_reported() { grep -E '^Added to the repo' "$1" | tail -n 1 | sed -E 's/^Added to the repo(sitory)?: *//' || true; }
restic_sent_begin() { REPO_BASE=$(repo_bytes "$1/repo"); }
restic_sent_end() { SENT=$(($(repo_bytes "$1/repo") - REPO_BASE)); }
restic_finish() { :; }

borg_env() { BORG_ENV=("BORG_BASE_DIR=$1/base" "BORG_PASSPHRASE=$BENCH_PASSWORD" BORG_DISPLAY_PASSPHRASE=no); }
borg_fresh() {
  borg_env "$1"
  env "${BORG_ENV[@]}" borg init -e repokey "$1/repo" </dev/null >"$1/setup.log" 2>&1 ||
    { tail -n 20 "$1/setup.log" >&2; die "borg init failed (log: $1/setup.log)"; }
}
borg_cmd() {
  # The same command is run twice in (c)/(d): let borg make the name unique.
  borg_env "$1"
  CMD=(env "${BORG_ENV[@]}" borg create --stats "$1/repo::run-{now:%Y%m%dT%H%M%S.%f}" "$2")
}
borg_reported() { awk '/^This archive:/ { print $(NF-1), $NF }' "$1" | tail -n 1; }
borg_sent_begin() { REPO_BASE=$(repo_bytes "$1/repo"); }
borg_sent_end() { SENT=$(($(repo_bytes "$1/repo") - REPO_BASE)); }
borg_finish() { :; }

# ---------------------------------------------------------------- measure ---
declare -A R_WALL R_RSS R_SENT

fmt2() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }
mib1() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }    # KiB -> MiB
mib2() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; } # bytes -> MiB

# Run CMD unmeasured (setup backups for (c) and (d)).
run_plain() { # LOG
  "${CMD[@]}" </dev/null >"$1" 2>&1 || { tail -n 20 "$1" >&2; die "command failed: ${CMD[*]} (log: $1)"; }
}

# Run CMD under /usr/bin/time for the client's peak RSS; wall time is taken
# here with nanosecond resolution so ratios of short runs stay meaningful.
run_measured() { # TOOL SCEN STATEDIR LOG
  local tool=$1 scen=$2 st=$3 out=$4 tf=$3/time.out t0 t1 reported
  sync # don't let write-back of the setup steps land inside the measurement
  "${tool}_sent_begin" "$st"
  t0=$(date +%s%N)
  if ! /usr/bin/time -f '%M' -o "$tf" "${CMD[@]}" </dev/null >"$out" 2>&1; then
    tail -n 20 "$out" >&2
    die "$tool failed in scenario ($scen): ${CMD[*]} (log: $out)"
  fi
  t1=$(date +%s%N)
  "${tool}_sent_end" "$st" "$out"
  R_WALL[$scen:$tool]=$(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.4f", ns / 1e9 }')
  R_RSS[$scen:$tool]=$(tail -n 1 "$tf")
  R_SENT[$scen:$tool]=$SENT
  reported=$("${tool}_reported" "$out")
  log "$(printf '  %-6s (%s): %8s s  %8s MiB peak  %10s MiB sent  [tool reports: %s]' \
    "$tool" "$scen" "$(fmt2 "${R_WALL[$scen:$tool]}")" "$(mib1 "${R_RSS[$scen:$tool]}")" \
    "$(mib2 "$SENT")" "${reported:-?}")"
}

run_case() { # TOOL SCEN
  local tool=$1 scen=$2 st=$STATE/$1-$2 src
  src=$(scenario_source "$scen")
  rm -rf "$st"
  mkdir -p "$st"
  [[ $scen != d ]] || prepare_edit_file
  "${tool}_fresh" "$st" "$src"
  "${tool}_cmd" "$st" "$src"
  case $scen in
    a | b) ;;
    c) run_plain "$LOGS/$tool-$scen-first.log" ;;
    d) run_plain "$LOGS/$tool-$scen-first.log"; apply_edit ;;
  esac
  run_measured "$tool" "$scen" "$st" "$LOGS/$tool-$scen.log"
  "${tool}_finish" "$st"
  rm -rf "$st" # repositories can be GiBs; logs stay in $LOGS
}

# ----------------------------------------------------------------- report ---
ratio() { # SCEN TOOL
  local c=${R_WALL[$1:cairn]:-}
  if [[ -z $c ]] || awk -v c="$c" 'BEGIN { exit !(c < 0.0005) }'; then echo "-"; return; fi
  awk -v t="${R_WALL[$1:$2]}" -v c="$c" 'BEGIN { printf "%.2f", t / c }'
}

TARGETS=()
TARGETS_FAILED=0
target() { # DESCRIPTION VERDICT(met|missed|n/a) DETAIL
  TARGETS+=("$1"$'\t'"$2"$'\t'"$3")
  [[ $2 != missed ]] || TARGETS_FAILED=1
}
check_targets() {
  local s c r v
  for s in a b; do
    c=${R_WALL[$s:cairn]:-} r=${R_WALL[$s:restic]:-}
    if [[ -n $c && -n $r ]]; then
      if awk -v c="$c" -v r="$r" 'BEGIN { exit !(c < r) }'; then v=met; else v=missed; fi
      target "($s) cairn faster than restic" "$v" "cairn $(fmt2 "$c") s vs restic $(fmt2 "$r") s"
    else
      target "($s) cairn faster than restic" n/a "needs cairn and restic in BENCH_TOOLS and scenario $s"
    fi
  done
  c=${R_WALL[c:cairn]:-}
  if [[ -n $c ]]; then
    if awk -v c="$c" 'BEGIN { exit !(c < 1) }'; then v=met; else v=missed; fi
    target "(c) cairn re-run under 1 s" "$v" "$(fmt2 "$c") s"
  else
    target "(c) cairn re-run under 1 s" n/a "needs cairn and scenario c"
  fi
  c=${R_SENT[d:cairn]:-}
  if [[ -n $c ]]; then
    if ((c <= 3 * MIB)); then v=met; else v=missed; fi
    target "(d) cairn sends at most 3 MiB" "$v" "$(mib2 "$c") MiB"
  else
    target "(d) cairn sends at most 3 MiB" n/a "needs cairn and scenario d"
  fi
}

tool_version() {
  case $1 in
    cairn) "$CAIRN" --version 2>/dev/null | head -n 1 ||
      echo "cairn (git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo uncommitted))" ;;
    rsync) rsync --version | head -n 1 ;;
    restic) restic version | head -n 1 ;;
    borg) borg --version ;;
  esac
}

print_report() {
  local md=$WORK/results.md s t sep cpu mem line
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  sep=$(printf '%.0s-' {1..96})

  echo
  printf '%-38s %-7s %9s %9s %10s %11s\n' scenario tool "wall s" "peak MiB" "sent MiB" "time/cairn"
  echo "$sep"
  {
    echo "# Backup benchmark results"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(nproc) CPUs ($cpu), $mem RAM, $(uname -sr)"
    echo "- data: large = $LARGE_MB MiB in 4 files; small = $SMALL_FILES files of 1-16 KiB; (d) edits 4 KiB in the middle of one $LARGE_MB MiB file"
    echo "- bytes sent: cairn and rsync: $([[ $NET_METHOD == iptables ]] && echo "IP bytes to the server port on lo (iptables)" || echo "as reported by the tool"); restic and borg: growth of the local repository (du -sb)"
    echo "- peak MiB: max RSS of the client process; wall time of the client command; page cache warm"
    echo "- versions:"
    for t in $TOOLS; do echo "  - $(tool_version "$t")"; done
    echo
    echo "| scenario | tool | wall s | peak MiB | sent MiB | time / cairn |"
    echo "| --- | --- | ---: | ---: | ---: | ---: |"
  } >"$md"
  for s in $SCENARIOS; do
    for t in $TOOLS; do
      [[ -n ${R_WALL[$s:$t]:-} ]] || continue
      line=("$(scenario_label "$s")" "$t" "$(fmt2 "${R_WALL[$s:$t]}")" "$(mib1 "${R_RSS[$s:$t]}")"
        "$(mib2 "${R_SENT[$s:$t]}")" "$(ratio "$s" "$t")")
      printf '%-38s %-7s %9s %9s %10s %11s\n' "${line[@]}"
      printf '| %s | %s | %s | %s | %s | %s |\n' "${line[@]}" >>"$md"
    done
  done
  echo "$sep"

  check_targets
  echo "targets:"
  printf '%s\n' "${TARGETS[@]}" | awk -F'\t' '{ printf "  %-36s %-7s %s\n", $1, $2, $3 }'
  {
    echo
    echo "Targets:"
    echo
    printf '%s\n' "${TARGETS[@]}" | awk -F'\t' '{ printf "- %s: **%s** (%s)\n", $1, $2, $3 }'
  } >>"$md"
  echo
  log "markdown written to $md; logs in $LOGS"
}

# ------------------------------------------------------------------- main ---
main() {
  log "tools: $TOOLS; scenarios: $SCENARIOS; large ${LARGE_MB} MiB, ${SMALL_FILES} small files"
  ensure_packages
  build_cairn
  mkdir -p "$WORK" "$LOGS"
  rm -rf "${STATE:?}" "${LOGS:?}"/*
  mkdir -p "$STATE"
  generate_data
  setup_iptables
  local s t
  # Scenario-major order so all tools run a scenario under similar cache state.
  for s in $SCENARIOS; do
    log "scenario $(scenario_label "$s")"
    for t in $TOOLS; do run_case "$t" "$s"; done
  done
  rm -rf "$EDIT"
  print_report
  if [[ $STRICT == 1 ]] && ((TARGETS_FAILED)); then die "some targets were missed (BENCH_STRICT=1)"; fi
}

# bench/scale.sh sources this file for its tools and measurements and runs its own main.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
