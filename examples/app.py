#!/usr/bin/env python3
"""An unmodified SQLite application on a litevault mount.

Nothing here knows about litevault: it is ordinary Python sqlite3 code.
Point it at a database on the mount and every committed transaction is
captured; `litevault log ls --db todo.db` shows one record per commit.

    python3 examples/app.py /var/lib/litevault/mnt/todo.db
"""
import sqlite3
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "todo.db"
db = sqlite3.connect(path, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")          # any journal mode works
db.execute("PRAGMA synchronous=NORMAL")
db.execute("CREATE TABLE IF NOT EXISTS todo(id INTEGER PRIMARY KEY, what TEXT, done INT DEFAULT 0)")
with db:                                        # one transaction = one log record
    db.execute("BEGIN")
    db.execute("INSERT INTO todo(what) VALUES ('write the report')")
    db.execute("INSERT INTO todo(what) VALUES ('read the log')")
db.execute("UPDATE todo SET done = 1 WHERE id = 1")   # autocommit: another record
for row in db.execute("SELECT id, what, done FROM todo ORDER BY id"):
    print(row)
db.close()
