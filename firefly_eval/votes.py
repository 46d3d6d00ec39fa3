"""The vote store of the human evaluation: one SQLite file (WAL) per evaluation set.

`firefly-judge` writes it through `VoteStore`; `firefly-eval tally` reads it with `read_votes` / `read_meta`.
Tables: `meta` (set id/hash, models, side salt, the key of the browser's remembered token), `annotators`
(name, sha256 of the token, admin flag), `sides` (which model is on the left, per annotator, item and pair:
decided once and recorded), `votes` (one row per annotator, item and pair) and `skips`.

A vote is committed (synchronous=FULL) before `record_vote` returns, so anything the app acknowledges
survives a kill of the server; `close` checkpoints the write-ahead log into the main file, so after a clean
shutdown the database is that one file. Schema 1 databases (before the wrong-language columns and the
browser key) are upgraded in place when the app opens them; the read-only readers read both.
"""
from __future__ import annotations

import csv
import hashlib
import itertools
import json
import secrets
import sqlite3
import threading
import time
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from firefly_core.errors import FireflyError, InputError
from firefly_core.io import atomic_open

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
CHOICES = ("left", "right", "tie")

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE annotators (name TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL UNIQUE,
                         is_admin INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE TABLE sides (annotator TEXT NOT NULL, item_id TEXT NOT NULL, pair TEXT NOT NULL, left_model TEXT NOT NULL,
                    PRIMARY KEY (annotator, item_id, pair));
CREATE TABLE votes (annotator TEXT NOT NULL, item_id TEXT NOT NULL, pair TEXT NOT NULL, task TEXT NOT NULL,
                    left_model TEXT NOT NULL, right_model TEXT NOT NULL,
                    choice TEXT NOT NULL CHECK (choice IN ('left', 'right', 'tie')),
                    left_correct INTEGER, right_correct INTEGER, comment TEXT NOT NULL, created_at REAL NOT NULL,
                    left_wrong_language INTEGER, right_wrong_language INTEGER,
                    PRIMARY KEY (annotator, item_id, pair));
CREATE TABLE skips (annotator TEXT NOT NULL, item_id TEXT NOT NULL, pair TEXT NOT NULL, created_at REAL NOT NULL,
                    PRIMARY KEY (annotator, item_id, pair));
"""


@dataclass(frozen=True)
class Vote:
    annotator: str
    item_id: str
    task: str
    left_model: str
    right_model: str
    choice: str  # "left" | "right" | "tie"
    left_correct: bool | None
    right_correct: bool | None
    comment: str
    created_at: float
    # open-ended items: whether each side is in the wrong language (rules.resolve); None where not recorded
    left_wrong_language: bool | None = None
    right_wrong_language: bool | None = None

    @property
    def pair(self) -> tuple[str, str]:
        return pair_of(self.left_model, self.right_model)


def pair_of(model_x: str, model_y: str) -> tuple[str, str]:
    """The canonical (sorted) form of a model pair: the same pair whichever model is on the left."""
    if model_x == model_y:
        raise FireflyError(f"a pair needs two different models, got {model_x!r} twice")
    return tuple(sorted((model_x, model_y)))


def all_pairs(models) -> list[tuple[str, str]]:
    return [pair_of(a, b) for a, b in itertools.combinations(models, 2)]


def _pair_key(pair) -> str:
    return "\t".join(pair_of(*pair))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _flag(value) -> bool | None:
    return None if value is None else bool(value)


def _vote_from_row(row) -> Vote:
    (annotator, item_id, task, left, right, choice, lc, rc, comment, created_at, lw, rw) = row
    return Vote(annotator, item_id, task, left, right, choice, _flag(lc), _flag(rc), comment, created_at,
                _flag(lw), _flag(rw))


_VOTE_COLUMNS = ("annotator, item_id, task, left_model, right_model, choice, left_correct, right_correct, comment, "
                 "created_at, left_wrong_language, right_wrong_language")
# Schema 1 had no wrong-language columns: read them as unknown.
_VOTE_COLUMNS_V1 = _VOTE_COLUMNS.replace("left_wrong_language, right_wrong_language", "NULL, NULL")


def _read_meta(conn, path) -> dict:
    try:
        rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError:
        raise InputError(path, "not a firefly votes database (no meta table)") from None
    missing = {"set_id", "set_hash", "models", "schema"} - set(rows)
    if missing:
        raise InputError(path, f"not a firefly votes database (meta lacks {sorted(missing)})")
    if int(rows["schema"]) not in READABLE_SCHEMAS:
        raise InputError(path, f"votes database schema {rows['schema']}, this version reads {READABLE_SCHEMAS}")
    return {"set_id": rows["set_id"], "set_hash": rows["set_hash"], "models": json.loads(rows["models"]),
            "salt": rows.get("salt"), "schema": int(rows["schema"]), "browser_key": rows.get("browser_key")}


def _open_readonly(db_path) -> sqlite3.Connection:
    path = Path(db_path)
    if not path.is_file():
        raise InputError(path, "file not found")
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def read_meta(db_path) -> dict:
    """{"set_id", "set_hash", "models"} of a votes database, opened read-only."""
    conn = _open_readonly(db_path)
    try:
        meta = _read_meta(conn, db_path)
    finally:
        conn.close()
    return {k: meta[k] for k in ("set_id", "set_hash", "models")}


def read_votes(db_path) -> list[Vote]:
    """Every vote in a database, opened read-only, in the order they were first cast."""
    conn = _open_readonly(db_path)
    try:
        columns = _VOTE_COLUMNS if _read_meta(conn, db_path)["schema"] >= 2 else _VOTE_COLUMNS_V1
        rows = conn.execute(f"SELECT {columns} FROM votes ORDER BY created_at, rowid").fetchall()
    finally:
        conn.close()
    return [_vote_from_row(r) for r in rows]


class VoteStore:
    """Read-write access for the app: annotators, side assignment, votes, skips. Thread-safe."""

    def __init__(self, path, set_id: str, set_hash: str, models):
        self.path = Path(path)
        self.models = list(models)
        if len(set(self.models)) < 2 or len(set(self.models)) != len(self.models):
            raise FireflyError(f"need at least two distinct models, got {self.models}")
        self._lock = threading.Lock()
        existed = self.path.exists() and self.path.stat().st_size > 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        try:
            if existed:
                meta = _read_meta(conn, self.path)  # checked before anything is written
                if meta["set_hash"] != set_hash:
                    raise FireflyError(f"{self.path}: database was made for set {meta['set_id']} "
                                       f"(hash {meta['set_hash'][:12]}), not {set_id} (hash {set_hash[:12]}); "
                                       "use another --db")
                if sorted(meta["models"]) != sorted(self.models):
                    raise FireflyError(f"{self.path}: database was made for models {meta['models']}, "
                                       f"not {self.models}; use another --db")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            if not existed:
                with _transaction(conn):
                    for stmt in _SCHEMA.strip().split(";"):
                        if stmt.strip():
                            conn.execute(stmt)
                    conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                        ("schema", str(SCHEMA_VERSION)), ("set_id", set_id), ("set_hash", set_hash),
                        ("models", json.dumps(self.models, ensure_ascii=False)), ("salt", secrets.token_hex(16)),
                        ("browser_key", secrets.token_hex(32))])
            elif meta["schema"] == 1:
                _upgrade_from_1(conn)
            meta = _read_meta(conn, self.path)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self.set_id, self.set_hash, self._salt = meta["set_id"], meta["set_hash"], meta["salt"]
        # The key that encrypts the token remembered by each browser (gr.BrowserState): kept here, so a
        # restarted server still reads what browsers remembered.
        self.browser_key: str = meta["browser_key"]
        self.pairs = all_pairs(self.models)

    @classmethod
    def open_existing(cls, path) -> "VoteStore":
        """Open a database that already exists, for the set and models it was made for."""
        meta = read_meta(path)
        return cls(path, meta["set_id"], meta["set_hash"], meta["models"])

    def close(self) -> None:
        """Checkpoint the write-ahead log into the main file and close (the -wal file is removed). Once."""
        with self._lock:
            if self._conn is None:
                return
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # annotators ------------------------------------------------------------------------------------------
    def add_annotator(self, name: str, admin: bool = False) -> str:
        """Create an annotator and return their token (shown once: only its sha256 is stored)."""
        name = name.strip()
        if not name or len(name) > 100 or any(c in name for c in "\t\r\n"):
            raise FireflyError(f"annotator name must be 1-100 characters without tabs or newlines: {name!r}")
        token = secrets.token_urlsafe(24)
        with self._lock, _transaction(self._conn):
            if self._conn.execute("SELECT 1 FROM annotators WHERE name = ?", (name,)).fetchone():
                raise FireflyError(f"annotator {name!r} already exists in {self.path}")
            self._conn.execute("INSERT INTO annotators VALUES (?, ?, ?, ?)",
                               (name, token_hash(token), int(admin), time.time()))
        return token

    def reissue_token(self, name: str) -> str:
        """A new token for an existing annotator (the old one stops working); returned once, like a new one."""
        token = secrets.token_urlsafe(24)
        with self._lock, _transaction(self._conn):
            changed = self._conn.execute("UPDATE annotators SET token_sha256 = ? WHERE name = ?",
                                         (token_hash(token), name.strip())).rowcount
            if not changed:
                known = [r[0] for r in self._conn.execute("SELECT name FROM annotators ORDER BY created_at")]
                raise FireflyError(f"no annotator {name.strip()!r} in {self.path} (annotators: {', '.join(known) or 'none'})")
        return token

    def annotator_for(self, token: str | None) -> tuple[str, bool] | None:
        if not token or not isinstance(token, str):
            return None
        with self._lock:
            row = self._conn.execute("SELECT name, is_admin FROM annotators WHERE token_sha256 = ?",
                                     (token_hash(token.strip()),)).fetchone()
        return (row[0], bool(row[1])) if row else None

    def annotators(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT name FROM annotators ORDER BY created_at")]

    # sides, votes, skips ---------------------------------------------------------------------------------
    def _check_pair(self, pair) -> tuple[str, str]:
        pair = pair_of(*pair)
        if pair not in self.pairs:
            raise FireflyError(f"pair {pair} is not among this database's models {self.models}")
        return pair

    def left_model_for(self, annotator: str, item_id: str, pair) -> str:
        """Which model of `pair` is shown on the left (as "A") to `annotator` for `item_id`.

        Decided by a keyed hash (the database's secret salt), so it is random-looking per annotator and
        item, the same on every call, and recorded in `sides` the first time it is asked for.
        """
        pair = self._check_pair(pair)
        key = _pair_key(pair)
        with self._lock:
            row = self._conn.execute("SELECT left_model FROM sides WHERE annotator=? AND item_id=? AND pair=?",
                                     (annotator, item_id, key)).fetchone()
            if row:
                return row[0]
            digest = hashlib.sha256("\0".join((self._salt, annotator, item_id, key)).encode()).digest()
            left = pair[digest[0] & 1]
            with _transaction(self._conn):
                self._conn.execute("INSERT OR IGNORE INTO sides VALUES (?, ?, ?, ?)", (annotator, item_id, key, left))
                left = self._conn.execute("SELECT left_model FROM sides WHERE annotator=? AND item_id=? AND pair=?",
                                          (annotator, item_id, key)).fetchone()[0]
            return left

    def record_vote(self, vote: Vote) -> None:
        """Insert or update the annotator's vote for (item, pair); committed before returning.

        Re-submitting an identical vote changes nothing (not even its time); a different choice, flags or
        comment for the same (annotator, item, pair) replaces the earlier one.
        """
        if vote.choice not in CHOICES:
            raise FireflyError(f"choice must be one of {CHOICES}, got {vote.choice!r}")
        pair = self._check_pair((vote.left_model, vote.right_model))
        if self.left_model_for(vote.annotator, vote.item_id, pair) != vote.left_model:
            raise FireflyError(f"vote by {vote.annotator!r} on {vote.item_id!r} has the sides swapped "
                               "relative to what was shown")
        flags = [None if f is None else int(bool(f)) for f in (vote.left_correct, vote.right_correct)]
        languages = [None if f is None else int(bool(f)) for f in (vote.left_wrong_language, vote.right_wrong_language)]
        row = (vote.annotator, vote.item_id, _pair_key(pair), vote.task, vote.left_model, vote.right_model,
               vote.choice, *flags, vote.comment or "", vote.created_at, *languages)
        with self._lock, _transaction(self._conn):
            if not self._conn.execute("SELECT 1 FROM annotators WHERE name = ?", (vote.annotator,)).fetchone():
                raise FireflyError(f"unknown annotator {vote.annotator!r}")
            self._conn.execute(
                "INSERT INTO votes (annotator, item_id, pair, task, left_model, right_model, choice, left_correct,"
                " right_correct, comment, created_at, left_wrong_language, right_wrong_language)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (annotator, item_id, pair) DO UPDATE SET choice=excluded.choice,"
                " left_correct=excluded.left_correct, right_correct=excluded.right_correct,"
                " comment=excluded.comment, created_at=excluded.created_at,"
                " left_wrong_language=excluded.left_wrong_language, right_wrong_language=excluded.right_wrong_language"
                " WHERE choice IS NOT excluded.choice OR left_correct IS NOT excluded.left_correct"
                " OR right_correct IS NOT excluded.right_correct OR comment IS NOT excluded.comment"
                " OR left_wrong_language IS NOT excluded.left_wrong_language"
                " OR right_wrong_language IS NOT excluded.right_wrong_language", row)
            self._conn.execute("DELETE FROM skips WHERE annotator=? AND item_id=? AND pair=?",
                               (vote.annotator, vote.item_id, _pair_key(pair)))

    def skip(self, annotator: str, item_id: str, pair) -> None:
        """Put (item, pair) aside for `annotator` (it comes back after everything else is done)."""
        key = _pair_key(self._check_pair(pair))
        with self._lock, _transaction(self._conn):
            self._conn.execute("INSERT OR REPLACE INTO skips VALUES (?, ?, ?, ?)", (annotator, item_id, key, time.time()))

    def unskip_all(self, annotator: str) -> None:
        """Bring back every item the annotator put aside (they are asked again, in their queue's order)."""
        with self._lock, _transaction(self._conn):
            self._conn.execute("DELETE FROM skips WHERE annotator = ?", (annotator,))

    def votes_of(self, annotator: str) -> list[Vote]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {_VOTE_COLUMNS} FROM votes WHERE annotator = ? "
                                      "ORDER BY created_at, rowid", (annotator,)).fetchall()
        return [_vote_from_row(r) for r in rows]

    def done_of(self, annotator: str) -> set[tuple[str, tuple[str, str]]]:
        """{(item_id, pair)} the annotator has voted on."""
        with self._lock:
            rows = self._conn.execute("SELECT item_id, pair FROM votes WHERE annotator = ?", (annotator,)).fetchall()
        return {(item_id, tuple(key.split("\t"))) for item_id, key in rows}

    def skipped_of(self, annotator: str) -> set[tuple[str, tuple[str, str]]]:
        with self._lock:
            rows = self._conn.execute("SELECT item_id, pair FROM skips WHERE annotator = ?", (annotator,)).fetchall()
        return {(item_id, tuple(key.split("\t"))) for item_id, key in rows}

    def all_votes(self) -> list[Vote]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {_VOTE_COLUMNS} FROM votes ORDER BY created_at, rowid").fetchall()
        return [_vote_from_row(r) for r in rows]

    def export_csv(self, path) -> int:
        """Write every vote as CSV (one row per vote, a header of the Vote fields); returns the row count."""
        votes = self.all_votes()
        write_votes_csv(path, votes)
        return len(votes)


def _upgrade_from_1(conn) -> None:
    """Schema 1 -> 2: the wrong-language columns (unknown for earlier votes) and the browser key."""
    with _transaction(conn):
        conn.execute("ALTER TABLE votes ADD COLUMN left_wrong_language INTEGER")
        conn.execute("ALTER TABLE votes ADD COLUMN right_wrong_language INTEGER")
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('browser_key', ?)", (secrets.token_hex(32),))
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))


def write_votes_csv(path, votes: list[Vote]) -> None:
    with atomic_open(path) as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([fl.name for fl in fields(Vote)])
        for v in votes:
            w.writerow(["" if x is None else x for x in astuple(v)])


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        return False
