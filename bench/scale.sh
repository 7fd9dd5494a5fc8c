#!/usr/bin/env bash
# Scale benchmark (issue 12): cairn against rsync (daemon on 127.0.0.1) and restic in one run,
# with bench/backup.sh's tools and measurements (this script sources it), on:
#   L     first backup, 1 GiB in 4 large files
#   RL    restore of those 1 GiB (cairn restore, restic restore, rsync pull from the daemon)
#   S     first backup, SCALE_SMALL (100,000) files of 4 KiB;  SR  its re-run, nothing changed
#   E<n>  first backup, n empty files;  R<n>  its re-run, nothing changed; for each n of
#         SCALE_COUNTS (10,000 100,000 1,000,000): the curve, which must be linear or better
# For each case: wall time and peak RSS of the client, peak RSS of the cairn server (VmHWM),
# bytes sent to the server port (iptables), and time / cairn. Then the physical floors of this
# machine (`cairn debug floors`: hashing, chunking, TLS; dd for the disk; file creation and
# stat rates), and the targets of issue 12. The drive row comes from bench/drive.sh
# (SCALE_DRIVE=1 runs it with 10,000 files and syncthing).
#
#   bash bench/scale.sh
#   SCALE_COUNTS="10000 100000" SCALE_SMALL=20000 BENCH_LARGE_MB=256 bash bench/scale.sh
#   SCALE_CASES="L RL" bash bench/scale.sh
set -euo pipefail
export LC_ALL=C

SCALE_COUNTS=${SCALE_COUNTS:-10000 100000 1000000}
SCALE_SMALL=${SCALE_SMALL:-100000}
SCALE_DRIVE=${SCALE_DRIVE:-0}
export BENCH_TOOLS=${BENCH_TOOLS:-cairn rsync restic}
BENCH_SCENARIOS=a source "$(dirname "${BASH_SOURCE[0]}")/backup.sh"
WORK=${BENCH_WORK:-$ROOT/bench/work}/scale
DATA=$WORK/data
STATE=$WORK/state
LOGS=$WORK/logs
RESTORED=$WORK/restored

for n in $SCALE_COUNTS $SCALE_SMALL; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "SCALE_COUNTS and SCALE_SMALL take positive integers, got '$n'"
done
SCENARIOS="L RL S SR"
for n in $SCALE_COUNTS; do SCENARIOS+=" E$n R$n"; done
# SCALE_CASES picks some of them ("L RL"), e.g. to measure one change again.
SCENARIOS=${SCALE_CASES:-$SCENARIOS}

# ------------------------------------------------------------------- data ---
# Trees of COUNT files of SIZE bytes, 100 per folder, two levels; generated once per stamp.
gen_tree() { # DIR COUNT SIZE
  local stamp="scale-v1 count=$2 size=$3"
  [[ -f $1.stamp && $(<"$1.stamp") == "$stamp" ]] && return 0
  log "generating $2 files of $3 bytes in $1"
  rm -rf "$1"
  python3 - "$1" "$2" "$3" <<'PY'
import os, random, sys
root, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(count * 7 + size)
for i in range(count):
    d = os.path.join(root, f"{i // 10000:03d}", f"{i // 100 % 100:02d}")
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:07d}"), "wb") as f:
        if size:
            f.write(rng.randbytes(size))
PY
  find "$1" -exec touch -h -d "$DATA_MTIME" {} +
  printf '%s\n' "$stamp" >"$1.stamp"
}

generate_data() {
  mkdir -p "$DATA/large"
  local part=$((LARGE_MB * MIB / 4)) i
  for i in 0 1 2 3; do
    [[ $(stat -c %s "$DATA/large/part-$i.bin" 2>/dev/null) == "$part" ]] ||
      gen_large_file "$DATA/large/part-$i.bin" "$part" "$i"
  done
  touch -d "$DATA_MTIME" "$DATA/large"/* "$DATA/large"
  gen_tree "$DATA/small" "$SCALE_SMALL" 4096
  for n in $SCALE_COUNTS; do gen_tree "$DATA/empty-$n" "$n" 0; done
}

scenario_source() {
  case $1 in
    L | RL) echo "$DATA/large" ;;
    S | SR) echo "$DATA/small" ;;
    E* | R*) echo "$DATA/empty-${1:1}" ;;
  esac
}

scenario_label() {
  case $1 in
    L) echo "first backup, ${LARGE_MB} MiB in 4 files" ;;
    RL) echo "restore, ${LARGE_MB} MiB in 4 files" ;;
    S) echo "first backup, $SCALE_SMALL x 4 KiB" ;;
    SR) echo "re-run, $SCALE_SMALL x 4 KiB, unchanged" ;;
    E*) echo "first backup, ${1:1} empty files" ;;
    R*) echo "re-run, ${1:1} empty files, unchanged" ;;
  esac
}

# --------------------------------------------------------------- restores ---
cairn_restore_cmd() { CMD=(env "CAIRN_HOME=$1/client" "$CAIRN" restore bench --to "$2"); }
restic_restore_cmd() {
  CMD=(env "RESTIC_PASSWORD=$BENCH_PASSWORD" restic -r "$1/repo" --cache-dir "$1/cache" restore latest --target "$2")
}
rsync_restore_cmd() { CMD=(rsync -a --stats "rsync://127.0.0.1:$RSYNC_PORT/bench/$(basename "$1")/dest/" "$2/"); }

# Every file of SRC has an equal copy somewhere under DST (tools nest restores differently).
check_restored() { # SRC DST TOOL
  local f copy
  for f in "$1"/*; do
    copy=$(find "$2" -type f -name "$(basename "$f")" | head -n 1)
    [[ -n $copy ]] && cmp -s "$f" "$copy" || die "$3 did not restore $f whole (under $2)"
  done
}

# ---------------------------------------------------------------- measure ---
declare -A R_SRV
CUR_SCEN=""
cairn_finish() {
  R_SRV[$CUR_SCEN]=$(awk '/^VmHWM/ { print $2 }' "/proc/$CAIRN_SERVER_PID/status" 2>/dev/null || echo 0)
  stop_pid "$CAIRN_SERVER_PID"
  CAIRN_SERVER_PID=""
}

run_case() { # TOOL SCEN
  local tool=$1 scen=$2 st=$STATE/$1-$2 src
  CUR_SCEN=$scen
  src=$(scenario_source "$scen")
  rm -rf "$st" "$RESTORED"
  mkdir -p "$st"
  "${tool}_fresh" "$st" "$src"
  "${tool}_cmd" "$st" "$src"
  case $scen in
    L | S | E*) ;;
    RL)
      run_plain "$LOGS/$tool-$scen-first.log"
      "${tool}_restore_cmd" "$st" "$RESTORED"
      ;;
    SR | R*) run_plain "$LOGS/$tool-$scen-first.log" ;;
  esac
  run_measured "$tool" "$scen" "$st" "$LOGS/$tool-$scen.log"
  [[ $scen != RL ]] || { check_restored "$src" "$RESTORED" "$tool"; R_SENT[$scen:$tool]=""; }
  "${tool}_finish" "$st"
  rm -rf "$st" "$RESTORED"
}

# ------------------------------------------------------------------ floors ---
FLOORS=()
measure_floors() {
  local out dir t0 t1 n=100000
  out=$("$CAIRN" debug floors --mib 512 2>&1) || die "cairn debug floors failed: $out"
  while IFS= read -r line; do FLOORS+=("$line"); done <<<"$out"
  dir=$WORK/floor-disk
  rm -rf "$dir"
  mkdir -p "$dir"
  sync
  t0=$(date +%s%N)
  dd if="$DATA/large/part-0.bin" of="$dir/copy" bs=4M conv=fsync status=none
  t1=$(date +%s%N)
  FLOORS+=("$(awk -v b="$(stat -c %s "$dir/copy")" -v ns=$((t1 - t0)) 'BEGIN { printf "disk write (dd, fsync): %.0f MiB/s", b / 1048576 / (ns / 1e9) }')")
  rm -rf "$dir"
  mkdir -p "$dir"
  t0=$(date +%s%N)
  python3 -c 'import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    if i % 100 == 0:
        os.makedirs(f"{d}/{i // 100}", exist_ok=True)
    open(f"{d}/{i // 100}/{i}", "wb").close()' "$dir" "$n"
  t1=$(date +%s%N)
  FLOORS+=("$(awk -v n=$n -v ns=$((t1 - t0)) 'BEGIN { printf "empty file creation (python, one process): %.0f files/s", n / (ns / 1e9) }')")
  t0=$(date +%s%N)
  find "$dir" -type f -printf '%s %T@\n' >/dev/null
  t1=$(date +%s%N)
  FLOORS+=("$(awk -v n=$n -v ns=$((t1 - t0)) 'BEGIN { printf "walk and stat (find -printf, warm): %.0f files/s", n / (ns / 1e9) }')")
  rm -rf "$dir"
}

# ----------------------------------------------------------------- report ---
ratio_of() { awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0) print "-"; else printf "%.2f", a / b }'; }
fastest_peer() { # SCEN -> wall of the fastest tool that is not cairn
  local t best=""
  for t in $TOOLS; do
    [[ $t != cairn && -n ${R_WALL[$1:$t]:-} ]] || continue
    if [[ -z $best ]] || awk -v a="${R_WALL[$1:$t]}" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=${R_WALL[$1:$t]}; fi
  done
  echo "$best"
}
judge() { # DESCRIPTION CAIRN LIMIT DETAIL: met when CAIRN <= LIMIT
  local v=n/a
  if [[ -n $2 && -n $3 ]]; then
    if awk -v c="$2" -v l="$3" 'BEGIN { exit !(c <= l) }'; then v=met; else v=missed; fi
  fi
  target "$1" "$v" "$4"
}

check_targets() {
  local c f r m
  c=${R_WALL[L:cairn]:-} r=${R_WALL[L:rsync]:-}
  judge "1 GiB first backup <= 1.5x rsync" "$c" "$(awk -v r="${r:-0}" 'BEGIN { print r * 1.5 }')" "cairn ${c:-?} s, rsync ${r:-?} s"
  c=${R_WALL[S:cairn]:-} f=$(fastest_peer S)
  judge "small files first backup <= 0.6x fastest peer" "$c" "$(awk -v f="${f:-0}" 'BEGIN { print f * 0.6 }')" "cairn ${c:-?} s, fastest peer ${f:-?} s"
  c=${R_WALL[SR:cairn]:-} r=${R_WALL[SR:rsync]:-}
  judge "small files re-run <= rsync" "$c" "$r" "cairn ${c:-?} s, rsync ${r:-?} s"
  c=${R_WALL[E1000000:cairn]:-} f=$(fastest_peer E1000000)
  judge "1M empty first backup <= 0.7x fastest peer" "$c" "$(awk -v f="${f:-0}" 'BEGIN { print f * 0.7 }')" "cairn ${c:-?} s, fastest peer ${f:-?} s"
  c=${R_WALL[R1000000:cairn]:-} r=${R_WALL[R1000000:rsync]:-}
  judge "1M re-run <= rsync" "$c" "$r" "cairn ${c:-?} s, rsync ${r:-?} s"
  m=${R_RSS[R1000000:cairn]:-}
  judge "1M re-run client < 200 MiB" "${m:+$((m / 1024))}" 199 "${m:+$((m / 1024))} MiB"
  c=${R_WALL[RL:cairn]:-} f=$(fastest_peer RL)
  judge "restore 1 GiB <= restic and rsync pull" "$c" "$f" "cairn ${c:-?} s, fastest peer ${f:-?} s"
}

# The curve: per-file cost from each size to the next may grow at most 25 %.
curve() {
  local prev="" n kind verdict=yes per line=""
  for kind in E R; do
    prev=""
    for n in $SCALE_COUNTS; do
      [[ -n ${R_WALL[$kind$n:cairn]:-} ]] || continue
      per=$(awk -v t="${R_WALL[$kind$n:cairn]}" -v n="$n" 'BEGIN { printf "%.3f", t / n * 1e6 }')
      line+="$kind$n ${per} us/file, $(awk -v k="${R_RSS[$kind$n:cairn]}" -v n="$n" 'BEGIN { printf "%.0f", k * 1024 / n }') B/file client; "
      if [[ -n $prev ]] && ! awk -v a="$per" -v b="$prev" 'BEGIN { exit !(a <= b * 1.25) }'; then verdict=no; fi
      prev=$per
    done
  done
  echo "curve (cairn, time per file and client peak per file): $line"
  echo "linear or better in time (per-file cost grows at most 25 % per step): $verdict"
}

print_scale_report() {
  local md=$WORK/results.md s t line srv cpu
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  {
    echo "# Scale benchmark results"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) CPUs ($cpu), $(uname -sr)"
    echo "- versions: $(for t in $TOOLS; do printf '%s; ' "$(tool_version "$t")"; done)"
    echo "- client peak: max RSS of the client command; server peak: the cairn server's VmHWM for the case"
    echo
    echo "| case | tool | wall s | client peak MiB | server peak MiB | sent MiB | time / cairn |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
    for s in $SCENARIOS; do
      for t in $TOOLS; do
        [[ -n ${R_WALL[$s:$t]:-} ]] || continue
        srv=-
        [[ $t != cairn ]] || srv=$(mib1 "${R_SRV[$s]:-0}")
        line=("$(scenario_label "$s")" "$t" "$(fmt2 "${R_WALL[$s:$t]}")" "$(mib1 "${R_RSS[$s:$t]}")" "$srv"
          "$([[ -n ${R_SENT[$s:$t]:-} ]] && mib2 "${R_SENT[$s:$t]}" || echo -)" "$(ratio_of "${R_WALL[$s:$t]}" "${R_WALL[$s:cairn]:-0}")")
        printf '| %s | %s | %s | %s | %s | %s | %s |\n' "${line[@]}"
      done
    done
    echo
    curve
    echo
    echo "Floors of this machine:"
    echo
    printf -- '- %s\n' "${FLOORS[@]}"
    echo
    check_targets
    echo "Targets:"
    echo
    printf '%s\n' "${TARGETS[@]}" | awk -F'\t' '{ printf "- %s: **%s** (%s)\n", $1, $2, $3 }'
  } >"$md"
  cat "$md"
}

main_scale() {
  log "tools: $TOOLS; cases: $SCENARIOS"
  ensure_packages
  build_cairn
  mkdir -p "$WORK" "$LOGS"
  rm -rf "${STATE:?}" "${LOGS:?}"/*
  mkdir -p "$STATE"
  generate_data
  setup_iptables
  measure_floors
  local s t
  for s in $SCENARIOS; do
    log "case: $(scenario_label "$s")"
    for t in $TOOLS; do run_case "$t" "$s"; done
  done
  print_scale_report
  if ((SCALE_DRIVE)); then
    log "drive: bench/drive.sh with 10,000 files"
    DRIVE_CAIRN_BIN=$CAIRN DRIVE_FILES=10000 DRIVE_EDITS=5 bash "$ROOT/bench/drive.sh"
  fi
}

main_scale "$@"
