"""The durable-ingest floor that `cargo bench --bench replay` measures appealflow against.

What a team would write in an afternoon merely to keep its inputs: Python's standard `json`
and `sqlite3`, each input parsed and serialised again, stored as one row (project, id, doc)
under a primary key with INSERT OR IGNORE, in transactions of 1000, WAL, synchronous=FULL.
It identifies no one, merges nothing and emits nothing.

Usage: python3 ingest_floor.py STREAM.jsonl STORE.db
Prints one JSON line: {"inputs": N, "seconds": S}.
"""

import json
import sqlite3
import sys
import time

BATCH = 1000


def main(stream_path, db_path):
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS inputs (project TEXT NOT NULL, id TEXT NOT NULL, "
        "doc TEXT NOT NULL, PRIMARY KEY (project, id))"
    )
    batch = []
    stored = 0

    def flush():
        conn.execute("BEGIN")
        conn.executemany("INSERT OR IGNORE INTO inputs VALUES (?, ?, ?)", batch)
        conn.execute("COMMIT")
        batch.clear()

    start = time.perf_counter()
    with open(stream_path, encoding="utf-8") as stream:
        for line in stream:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if not isinstance(doc, dict):
                continue
            key = doc.get("message_id") or doc.get("command_id")
            batch.append((str(doc.get("project_id")), f"{doc.get('type')}:{key}", json.dumps(doc, ensure_ascii=False)))
            stored += 1
            if len(batch) == BATCH:
                flush()
    if batch:
        flush()
    print(json.dumps({"inputs": stored, "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
