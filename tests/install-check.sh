#!/bin/sh
# install-check.sh -- `make install DESTDIR=... PREFIX=/usr` puts every file
# where a distribution expects it, and the systemd unit runs the installed binary.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
make -s -C "$top" install DESTDIR="$dest" PREFIX=/usr >/dev/null
fail=0; pass=0
for f in usr/bin/litevault usr/share/man/man1/litevault.1 usr/share/bash-completion/completions/litevault \
         usr/lib/systemd/system/litevault.service usr/share/doc/litevault/config.yml.sample \
         usr/share/doc/litevault/README.md usr/share/doc/litevault/DESIGN.md usr/share/doc/litevault/FORMAT.md; do
    if [ -s "$dest/$f" ]; then pass=$((pass + 1)); else echo "install-check: FAIL: $f missing"; fail=$((fail + 1)); fi
done
if grep -q '^ExecStart=/usr/bin/litevault mount' "$dest/usr/lib/systemd/system/litevault.service"; then
    pass=$((pass + 1))
else
    echo "install-check: FAIL: the unit does not run /usr/bin/litevault"; fail=$((fail + 1))
fi
if "$dest/usr/bin/litevault" version | grep -q '^litevault '; then pass=$((pass + 1)); else
    echo "install-check: FAIL: the installed binary does not run"; fail=$((fail + 1)); fi
echo "install-check: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
