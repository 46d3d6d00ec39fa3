"""lm-eval's request cache (`simple_evaluate(use_cache=...)`), in the same file, at a fraction of the cost.

lm-eval keeps each scored request in SQLite through `sqlitedict` with `autocommit=True`: every request costs a
look-up, two writes and two commits, each through sqlitedict's worker thread, which also records a stack trace
per statement. On a leaderboard run that is about 1.3 ms per request on 2 CPU cores, as much as the tokeniser
(`bench/NOTES.md`). `RequestCache` reads and writes the same table directly and commits at most every two
seconds (and when lm-eval commits at the end of a call), so a killed run loses at most the last two seconds of
results and a rerun still scores only what is missing. The file stays a `sqlitedict` file: lm-eval's own
`CachingLM` reads it, and this reads lm-eval's.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import sqlite3
import time

import lm_eval.api.model as lm_model

TABLE = "unnamed"  # sqlitedict's default table


class RequestCache:
    """The mapping lm-eval's `CachingLM` keeps as `dbdict`: request hash -> pickled response."""

    def __init__(self, path: str, commit_seconds: float = 2.0):
        self.db = sqlite3.connect(path)
        self.db.execute(f'CREATE TABLE IF NOT EXISTS "{TABLE}" (key TEXT PRIMARY KEY, value BLOB)')
        self.db.commit()
        self.commit_seconds, self.committed = commit_seconds, time.monotonic()

    def __contains__(self, key: str) -> bool:
        return self.db.execute(f'SELECT 1 FROM "{TABLE}" WHERE key = ?', (key,)).fetchone() is not None

    def __getitem__(self, key: str):
        row = self.db.execute(f'SELECT value FROM "{TABLE}" WHERE key = ?', (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return pickle.loads(bytes(row[0]))

    def __setitem__(self, key: str, value) -> None:
        self.db.execute(f'REPLACE INTO "{TABLE}" (key, value) VALUES (?, ?)',
                        (key, sqlite3.Binary(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))))
        if time.monotonic() - self.committed > self.commit_seconds:
            self.commit()

    def commit(self) -> None:
        self.db.commit()
        self.committed = time.monotonic()

    def close(self) -> None:
        self.commit()
        self.db.close()


class RequestCachingLM(lm_model.CachingLM):
    """lm-eval's `CachingLM` over a `RequestCache`."""

    def __init__(self, lm, cache_db: str):
        self.lm, self.cache_db = lm, cache_db
        os.makedirs(os.path.dirname(cache_db) or ".", exist_ok=True)
        self.dbdict = RequestCache(cache_db)
        lm.set_cache_hook(self.get_cache_hook())


@contextlib.contextmanager
def request_cache():
    """While inside, `simple_evaluate(use_cache=...)` keeps its cache through `RequestCache`."""
    original, lm_model.CachingLM = lm_model.CachingLM, RequestCachingLM
    try:
        yield
    finally:
        lm_model.CachingLM = original
