#!/usr/bin/env bash
# Two cairn builds, alternated, each doing a first backup of the same 1 GiB (4 files) to a
# fresh server: wall time, the client's CPU and the server's CPU per run. This machine's speed
# drifts by the hour, so a change is judged only against the other build in the same run.
#
#   bash bench/ab_backup.sh OLD_CAIRN NEW_CAIRN [ROUNDS]
#
# The data is bench/scale.sh's large set (made by `SCALE_CASES=L bash bench/scale.sh`).
set -euo pipefail
old=${1:?the build to compare against}
new=${2:?the build under test}
rounds=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
data=$here/work/scale/data/large
[ -d "$data" ] || { echo "no data at $data: run SCALE_CASES=L bash bench/scale.sh first" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

one_run() {
  local name=$1 bin=$2 st=$work/$1 port
  rm -rf "$st"; mkdir -p "$st/server" "$st/client"
  port=$(free_port)
  "$bin" server run --data "$st/server" --listen "127.0.0.1:$port" </dev/null >"$st/server.log" 2>&1 &
  local sp=$!
  for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  {
    printf 'pw-bench-12345\n' | "$bin" server user add bench --password-stdin --data "$st/server"
    "$bin" server folder add backup --data "$st/server"
    "$bin" server folder grant backup bench --access rw --data "$st/server"
    local fp
    fp=$("$bin" server fingerprint --data "$st/server" | awk 'NF { l = $0 } END { print l }')
    printf 'pw-bench-12345\n' | CAIRN_HOME=$st/client "$bin" connect "https://127.0.0.1:$port" \
      --user bench --password-stdin --fingerprint "$fp" --name srv
    CAIRN_HOME=$st/client "$bin" backup add bench --local "$data" --connection srv --folder backup
  } >"$st/setup.log" 2>&1
  sync
  local s0 s1 line
  s0=$(awk '{print $14+$15}' "/proc/$sp/stat")
  line=$(CAIRN_HOME=$st/client /usr/bin/time -f "%e %U %S" "$bin" run bench --once 2>&1 >/dev/null | tail -1)
  s1=$(awk '{print $14+$15}' "/proc/$sp/stat")
  kill "$sp"; wait "$sp" 2>/dev/null || true
  local ticks; ticks=$(getconf CLK_TCK)
  read -r wall user sys <<<"$line"
  printf '| %s | %s | %.2f | %.2f |\n' "$name" "$wall" "$(echo "$user + $sys" | bc)" \
    "$(echo "scale=2; ($s1 - $s0) / $ticks" | bc)"
  rm -rf "$st"
}

echo "| build | wall (s) | client CPU (s) | server CPU (s) |"
echo "| --- | --- | --- | --- |"
for _ in $(seq 1 "$rounds"); do
  one_run old "$old"
  one_run new "$new"
done
