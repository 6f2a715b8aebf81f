#!/usr/bin/env python3
"""proxy-app.py -- a small HTTP application on a litevault mount, to run
behind litevault's built-in proxy (config: proxy:, README "HTTP proxy").

    python3 examples/proxy-app.py --db /var/lib/litevault/mnt/app.db --port 8081 [--init] [--name node1]

One per node, each on its node's mount; the proxy (proxy.target) is in
front of it.  --init (on the primary) creates the table.  Every request
opens its own connection and closes it, so no read transaction outlives a
request (a replica applies the primary's records between them).

  POST /rows        inserts a row; the request body (Content-Length or
                    chunked, read as it comes) is not kept, only its length
                    and CRC-32: {"id": N, "len": L, "crc32": C}
  GET  /rows/last   {"count": C, "last": N} (0 and 0 before the table exists)
  GET  /blob?n=N    N bytes (i % 251), chunked: {"crc32" ...} is the client's job
  GET  /who         the node's name (--name)
  GET  /static/...  a small text file, for passthrough patterns
"""
import argparse
import json
import os
import sqlite3
import sys
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs

ARGS = None


def connect():
    db = sqlite3.connect(ARGS.db, timeout=10, isolation_level=None)
    db.execute("PRAGMA busy_timeout=10000")
    return db


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, Content-Length on every answer
    disable_nagle_algorithm = True  # the head and the body are two writes: no 40 ms delayed-ACK stall

    def log_message(self, fmt, *args):  # quiet: the tests and the bench make many requests
        pass

    def reply(self, status, obj, ctype="application/json"):
        body = obj if isinstance(obj, bytes) else (json.dumps(obj) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self):
        """The request body as it comes: its length and CRC-32 (never held whole)."""
        n, crc = 0, 0

        def take(left):  # read exactly `left` bytes into n and crc
            nonlocal n, crc
            while left:
                part = self.rfile.read(min(left, 1 << 16))
                if not part:
                    raise IOError("body cut")
                crc = zlib.crc32(part, crc)
                n += len(part)
                left -= len(part)

        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                take(size)
                self.rfile.readline(16)
        else:
            take(int(self.headers.get("Content-Length", "0") or 0))
        return n, crc

    def do_POST(self):
        if urlsplit(self.path).path != "/rows":
            return self.reply(404, {"error": "no such path"})
        n, crc = self.read_body()
        db = connect()
        try:
            cur = db.execute("INSERT INTO rows(len, crc) VALUES (?, ?)", (n, crc))
            rid = cur.lastrowid
        except sqlite3.Error as e:
            return self.reply(500, {"error": str(e)})
        finally:
            db.close()
        self.reply(200, {"id": rid, "len": n, "crc32": crc})

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        u = urlsplit(self.path)
        if u.path == "/who":
            return self.reply(200, (ARGS.name + "\n").encode(), "text/plain")
        if u.path.startswith("/static/"):
            return self.reply(200, b"body { color: black }\n", "text/css")
        if u.path == "/rows/last":
            if not os.path.exists(ARGS.db):
                return self.reply(200, {"count": 0, "last": 0})
            db = connect()
            try:
                count, last = db.execute("SELECT count(*), coalesce(max(id), 0) FROM rows").fetchone()
            except sqlite3.Error as e:
                return self.reply(200 if "no such table" in str(e) else 500, {"count": 0, "last": 0, "error": str(e)})
            finally:
                db.close()
            return self.reply(200, {"count": count, "last": last})
        if u.path == "/blob":
            n = int(parse_qs(u.query).get("n", ["0"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            pattern = bytes(i % 251 for i in range(251 * 256))
            off = 0
            while off < n:
                k = min(n - off, 1 << 16)
                start = off % 251
                part = (pattern[start:] + pattern)[:k]
                self.wfile.write(b"%x\r\n" % k + part + b"\r\n")
                off += k
            self.wfile.write(b"0\r\n\r\n")
            return
        self.reply(404, {"error": "no such path"})


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", required=True, help="database path on the litevault mount")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--name", default="app")
    ap.add_argument("--init", action="store_true", help="create the table (on the primary)")
    ARGS = ap.parse_args()
    if ARGS.init:
        db = connect()
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS rows(id INTEGER PRIMARY KEY, len INTEGER, crc INTEGER)")
        db.close()
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 128
    srv = ThreadingHTTPServer((ARGS.bind, ARGS.port), Handler)
    print("proxy-app: serving %s on %s:%d" % (ARGS.db, ARGS.bind, ARGS.port), file=sys.stderr, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
