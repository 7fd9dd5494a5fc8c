#!/usr/bin/env bash
# The web UI on a folder of 10,000 files: best-of-5 time of a folder page (first and last of
# 50), the folder root, one file's versions and the folder as a zip, through the real login
# form, server and curl on 127.0.0.1 (release build: cargo build --release -p cairn).
set -euo pipefail
B=${CAIRN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/cairn}
W=$(mktemp -d /tmp/webbench.XXXX)
export CAIRN_HOME=$W/client
$B server run --data $W/server --listen 127.0.0.1:18443 > $W/server.log 2>&1 &
SP=$!
trap 'kill $SP 2>/dev/null || true; rm -rf "$W"' EXIT
sleep 3
echo 'alice-pw-123' | $B server user add alice --password-stdin --data $W/server >/dev/null
$B server folder add backup --data $W/server >/dev/null
$B server folder grant backup alice --access rw --data $W/server >/dev/null
FP=$($B server fingerprint --data $W/server | tail -1)
mkdir -p $W/docs/big
python3 - "$W/docs/big" <<'PY'
import os, sys
d = sys.argv[1]
for i in range(10000):
    with open(os.path.join(d, f"f{i:05d}.txt"), "w") as f:
        f.write(f"file {i}\n")
PY
echo 'alice-pw-123' | $B connect https://127.0.0.1:18443 --user alice --password-stdin --fingerprint "$FP" --name srv >/dev/null
$B backup add docs --local $W/docs --connection srv --folder backup >/dev/null
$B run docs >/dev/null
# Log in through the form.
C=$W/cookies
curl -sk -c $C -b $C https://127.0.0.1:18443/login -o $W/login.html
CSRF=$(grep -o 'name="csrf" value="[0-9a-f]*"' $W/login.html | head -1 | sed 's/.*value="//; s/"//')
curl -sk -c $C -b $C -o /dev/null -d "user=alice&password=alice-pw-123&csrf=$CSRF" https://127.0.0.1:18443/login
COMP=$(hostname)
DIR="$COMP/docs/big"
for what in "folder view, first page|/ui/f/backup?dir=$DIR" "folder view, last page|/ui/f/backup?dir=$DIR&page=49" "folder root|/ui/f/backup" "versions of one file|/ui/f/backup/versions?path=$DIR/f05000.txt" "zip of the folder|/ui/f/backup/zip?dir=$DIR"; do
  name=${what%%|*}; url=${what#*|}
  best=999
  for i in 1 2 3 4 5; do
    t=$(curl -sk -b $C -o $W/out -w '%{time_total}' "https://127.0.0.1:18443$url")
    best=$(python3 -c "print(min($best, $t))")
  done
  size=$(stat -c %s $W/out)
  echo "$name: best of 5 $best s, $size bytes"
done
