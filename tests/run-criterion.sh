#!/bin/sh
# Run a Criterion test binary; if it fails, repeat its failure lines at the
# end of the output, so a CI log that keeps only the tail still names them.
#   tests/run-criterion.sh LOGFILE BINARY [ARGS...]
set -u
log=$1
shift
mkdir -p "$(dirname "$log")"
status_file="$log.status"
{ "$@" 2>&1; echo $? >"$status_file"; } | tee "$log"
st=$(cat "$status_file" 2>/dev/null || echo 1)
rm -f "$status_file"
if [ "$st" != 0 ]; then
    echo "==== $1 failed (exit $st); its failures were: ===="
    grep -E '^\[----\]|\[FAIL\]|CRASH|[Tt]imed out|signal' "$log" | grep -v 'Synthesis' | tail -40
    echo "==== full output: $log ===="
fi
exit "$st"
