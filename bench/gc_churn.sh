# The churn part of bench/gc.sh (sourced by it: uses its CAIRN, DATA, ST, WORK, CHURN_ROUNDS,
# start_server, stop_server, timed, log and die).

TREE=$WORK/gc-churn-tree
rm -rf "$TREE"
cp -r "$DATA/small" "$TREE"

# Gives a seeded 30 % of the files under TREE new contents of the same size range.
churn() { # ROUND
  python3 - "$TREE" "$1" <<'PY'
import os, random, sys
root, round_ = sys.argv[1], int(sys.argv[2])
rng = random.Random(7000 + round_)
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
for path in rng.sample(files, len(files) * 3 // 10):
    with open(path, "wb") as f:
        f.write(rng.randbytes(rng.randint(1024, 16384)))
PY
}

bytes_of() { du -sb "$1" | awk '{ print $1 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

log "churn: $CHURN_ROUNDS rounds of 30 % of $SMALL_FILES files, cairn"
start_server "$TREE" --keep-versions 1
timed "$ST/churn-0.log" env "CAIRN_HOME=$ST/client" "$CAIRN" run bench --once >/dev/null
for ((r = 1; r <= CHURN_ROUNDS; r++)); do
  churn "$r"
  timed "$ST/churn-$r.log" env "CAIRN_HOME=$ST/client" "$CAIRN" run bench --once >/dev/null
done
stop_server
retained=$(find "$TREE" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
store_before=$(bytes_of "$ST/server/chunks")
# Two runs: gc spares what the generation before it touched (the last backup's work).
gc1=$(timed "$ST/gc-churn-1.log" "$CAIRN" server gc --data "$ST/server")
gc2=$(timed "$ST/gc-churn-2.log" "$CAIRN" server gc --data "$ST/server")
store_after=$(bytes_of "$ST/server/chunks")
check_out=$("$CAIRN" server check --read-data --data "$ST/server" 2>&1) ||
  die "check after repacking found problems: $check_out"
moved=$(grep -ho 'repacked packs with dead space: [0-9]* bytes' "$ST"/gc-churn-*.log | awk '{ s += $(NF-1) } END { print s + 0 }')

restic_line="| restic forget --keep-last 1 --prune | - | - | - | - |"
if command -v restic >/dev/null; then
  log "churn: the same rounds, restic"
  rm -rf "$TREE" "$WORK/gc-restic"
  cp -r "$DATA/small" "$TREE"
  export RESTIC_PASSWORD=$PASSWORD
  repo=(restic -r "$WORK/gc-restic/repo" --cache-dir "$WORK/gc-restic/cache")
  "${repo[@]}" init >"$WORK/gc-restic.log" 2>&1 || die "restic init failed"
  (cd "$TREE" && "${repo[@]}" backup . >>"$WORK/gc-restic.log" 2>&1) || die "restic backup failed"
  for ((r = 1; r <= CHURN_ROUNDS; r++)); do
    churn "$r"
    (cd "$TREE" && "${repo[@]}" backup . >>"$WORK/gc-restic.log" 2>&1) || die "restic backup failed"
  done
  r_before=$(bytes_of "$WORK/gc-restic/repo/data")
  r_prune=$(timed "$WORK/gc-restic-prune.log" "${repo[@]}" forget --keep-last 1 --prune)
  r_after=$(bytes_of "$WORK/gc-restic/repo/data")
  restic_line="| restic forget --keep-last 1 --prune (repo data/) | $r_before | $r_after | $(ratio "$r_after" "$retained") | $r_prune |"
  rm -rf "$WORK/gc-restic"
fi

printf '\n| churn (%s rounds of 30 %% of %s files), retained %s bytes | store before | store after | after / retained | gc or prune s |\n' \
  "$CHURN_ROUNDS" "$SMALL_FILES" "$retained"
printf '| --- | ---: | ---: | ---: | ---: |\n'
printf '| cairn server gc x2 (chunks/) | %s | %s | %s | %s + %s |\n' \
  "$store_before" "$store_after" "$(ratio "$store_after" "$retained")" "$gc1" "$gc2"
printf '%s\n' "$restic_line"
printf '\ncairn moved %s bytes of live chunks into new packs (%s of the retained data).\n' \
  "$moved" "$(ratio "$moved" "$retained")"
verdict=no
awk -v a="$store_after" -v b="$retained" 'BEGIN { exit !(a <= 1.10 * b) }' && verdict=yes
printf 'target: cairn store after churn and gc at most 1.10x the retained data: %s\n' "$verdict"
rm -rf "$ST" "$TREE"
