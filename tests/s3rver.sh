#!/bin/sh
# Start or stop a local S3-compatible server (s3rver, pinned in
# tests/package.json) for the store tests.
#
#   tests/s3rver.sh start DIR PORT [BUCKET...]   serve DIR on 127.0.0.1:PORT, create the
#                                                buckets, wait until it answers; pid in DIR/s3rver.pid
#   tests/s3rver.sh stop DIR                     kill the server started on DIR (SIGTERM, then SIGKILL)
#   tests/s3rver.sh kill DIR                     SIGKILL at once (simulates a crash)
#
# Credentials accepted by s3rver: access key S3RVER, secret S3RVER (any
# other access key gets 403 InvalidAccessKeyId; V4 signatures are not
# verified).  Server output goes to DIR/s3rver.log.
# Exits non-zero with a message if s3rver is not installed (run `make deps`,
# which runs `npm ci` in tests/).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin="$here/node_modules/.bin/s3rver"

# 1 if pid is running (a zombie, left unreaped when PID 1 does not reap
# orphans, counts as gone).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    st=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null || true)
    [ "$st" != Z ] && [ -n "$st" ]
}

# HTTP status of a signed request (s3rver checks the access key, not V4 signatures).
s3req() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 --aws-sigv4 aws:amz:us-east-1:s3 -u S3RVER:S3RVER \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@" 2>/dev/null || true
}

usage() { echo "usage: $0 start DIR PORT [BUCKET...] | stop DIR | kill DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 dir=$2

case "$cmd" in
start)
    [ $# -ge 3 ] || usage
    port=$3
    shift 3
    if [ ! -x "$bin" ]; then
        echo "s3rver.sh: $bin not found: run 'make deps' (npm ci in tests/)" >&2
        exit 3
    fi
    for t in node curl; do
        command -v $t >/dev/null 2>&1 || { echo "s3rver.sh: $t not found (make deps)" >&2; exit 3; }
    done
    mkdir -p "$dir/data"
    # s3rver 3.7 makes continuation tokens with DES, which OpenSSL 3 only
    # has in its legacy provider (else ListObjectsV2 pagination fails).
    NODE_OPTIONS=--openssl-legacy-provider nohup "$bin" --directory "$dir/data" --port "$port" \
        --address 127.0.0.1 --silent >"$dir/s3rver.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$dir/s3rver.pid"
    i=0
    while :; do
        if ! alive "$pid"; then
            echo "s3rver.sh: s3rver exited during start-up:" >&2
            cat "$dir/s3rver.log" >&2
            exit 1
        fi
        # Up when every bucket exists: create each (200, or 409 if it is
        # there from an earlier run on the same DIR), then check with HEAD.
        ok=1
        for b in "$@"; do
            c=$(s3req -X PUT "http://127.0.0.1:$port/$b")
            [ "$c" = 200 ] || [ "$c" = 409 ] || ok=0
            [ $ok = 1 ] && [ "$(s3req -I "http://127.0.0.1:$port/$b")" = 200 ] || ok=0
        done
        [ $# -gt 0 ] || [ "$(s3req "http://127.0.0.1:$port/")" = 200 ] || ok=0
        [ $ok = 1 ] && break
        i=$((i + 1))
        if [ $i -ge 200 ]; then
            echo "s3rver.sh: no answer on 127.0.0.1:$port after 10 s" >&2
            kill -9 "$pid" 2>/dev/null || true
            exit 1
        fi
        sleep 0.05
    done
    ;;
stop | kill)
    [ -f "$dir/s3rver.pid" ] || exit 0
    pid=$(cat "$dir/s3rver.pid")
    if [ "$cmd" = kill ]; then
        kill -9 "$pid" 2>/dev/null || true
    else
        kill "$pid" 2>/dev/null || true
    fi
    i=0
    while alive "$pid"; do
        i=$((i + 1))
        [ $i -eq 100 ] && kill -9 "$pid" 2>/dev/null || true
        [ $i -ge 200 ] && { echo "s3rver.sh: pid $pid does not exit" >&2; exit 1; }
        sleep 0.05
    done
    rm -f "$dir/s3rver.pid"
    ;;
*)
    usage
    ;;
esac
