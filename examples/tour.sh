#!/bin/sh
# The README's 5-minute tour as a script: mount, write with the sqlite3
# shell in two journal modes, inspect the log, replay an earlier state,
# restore one from the archive (a local directory), and export a live copy.
# Run from the repository root after `make`:  sh examples/tour.sh
set -eu
LV=${LITEVAULT:-./litevault}
case "$LV" in
*/*) LV="$(cd "$(dirname "$LV")" && pwd)/$(basename "$LV")" ;;
*) LV=$(command -v "$LV") ;;
esac
dir=$(mktemp -d)
cat > "$dir/litevault.yml" <<CFG
fuse:
  dir: $dir/mnt
data:
  dir: $dir/data
http:
  addr: 127.0.0.1:${PORT:-20299}
log:
  level: warn
archive:
  - url: file://$dir/archive
    sync-interval: 200ms
CFG
"$LV" mount -c "$dir/litevault.yml" -- sh -c '
  set -e
  cd "$1/mnt"
  sqlite3 app.db "create table notes(id integer primary key, body text)"
  sqlite3 app.db "insert into notes(body) values (\"hello\"), (\"world\")"
  sqlite3 app.db "pragma journal_mode=wal; insert into notes(body) values (\"in WAL mode\")" >/dev/null
  "$2" status -c "$1/litevault.yml"
  "$2" log ls -c "$1/litevault.yml" --db app.db
  "$2" log replay -c "$1/litevault.yml" --db app.db --txid 2 -o "$1/app-at-2.db"
  echo "after TXID 2:"; sqlite3 "$1/app-at-2.db" "select * from notes"
  echo "now:";          sqlite3 app.db "select * from notes"
  sleep 1   # the archive uploads every 200 ms
  "$2" archive ls -c "$1/litevault.yml"
  "$2" restore -c "$1/litevault.yml" --db app.db --txid 3 "$1/app-at-3.db"
  echo "restored from the archive, after TXID 3:"; sqlite3 "$1/app-at-3.db" "select * from notes"
  "$2" export -c "$1/litevault.yml" --db app.db -o "$1/copy.db"
' tour "$dir" "$LV"
rm -rf "$dir"
