"""The vote store: sides recorded, idempotent votes, tokens hashed, read-only readers, wrong-set refusal."""
import csv
import sqlite3
import threading

import pytest

from firefly_core.errors import FireflyError, InputError
from firefly_eval.votes import Vote, VoteStore, all_pairs, read_meta, read_votes, token_hash


@pytest.fixture
def store(tmp_path):
    s = VoteStore(tmp_path / "votes.sqlite", "zh130", "h" * 64, ["base", "tuned"])
    yield s
    s.close()


def _vote(store, who, item, choice="left", **kw):
    left = store.left_model_for(who, item, ("base", "tuned"))
    right = "tuned" if left == "base" else "base"
    return Vote(who, item, kw.pop("task", "math"), left, right, choice, kw.pop("left_correct", None),
                kw.pop("right_correct", None), kw.pop("comment", ""), kw.pop("created_at", 100.0))


def test_wal_mode_and_meta(store, tmp_path):
    conn = sqlite3.connect(tmp_path / "votes.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert read_meta(tmp_path / "votes.sqlite") == {"set_id": "zh130", "set_hash": "h" * 64,
                                                    "models": ["base", "tuned"]}


def test_token_is_stored_only_as_sha256(store, tmp_path):
    token = store.add_annotator("alice")
    admin = store.add_annotator("root", admin=True)
    assert store.annotator_for(token) == ("alice", False)
    assert store.annotator_for(admin) == ("root", True)
    assert store.annotator_for("wrong") is None and store.annotator_for("") is None
    assert store.annotator_for(None) is None
    conn = sqlite3.connect(tmp_path / "votes.sqlite")
    raw = conn.execute("SELECT token_sha256 FROM annotators WHERE name='alice'").fetchone()[0]
    conn.close()
    assert raw == token_hash(token) and token not in raw
    with pytest.raises(FireflyError, match="already exists"):
        store.add_annotator("alice")


def test_sides_deterministic_recorded_and_mixed(store):
    lefts = [store.left_model_for("alice", f"i{k}", ("tuned", "base")) for k in range(60)]
    assert lefts == [store.left_model_for("alice", f"i{k}", ("base", "tuned")) for k in range(60)]
    # both sides occur: 60 fair coin flips all landing the same way has probability 2**-59
    assert set(lefts) == {"base", "tuned"}
    other = [store.left_model_for("bob", f"i{k}", ("base", "tuned")) for k in range(60)]
    assert other != lefts  # randomised per annotator too
    with pytest.raises(FireflyError, match="not among"):
        store.left_model_for("alice", "i1", ("base", "other"))


def test_vote_idempotent_update_and_skip(store, tmp_path):
    store.add_annotator("alice")
    store.skip("alice", "i1", ("base", "tuned"))
    assert store.skipped_of("alice") == {("i1", ("base", "tuned"))}
    v = _vote(store, "alice", "i1", left_correct=True, right_correct=False)
    store.record_vote(v)
    store.record_vote(v)
    store.record_vote(_vote(store, "alice", "i1", left_correct=True, right_correct=False, created_at=999.0))
    assert store.votes_of("alice") == [v]  # identical resubmission keeps the first row and its time
    assert store.skipped_of("alice") == set()
    changed = _vote(store, "alice", "i1", "tie", left_correct=True, right_correct=False, comment="close",
                    created_at=200.0)
    store.record_vote(changed)
    assert store.votes_of("alice") == [changed]
    assert read_votes(tmp_path / "votes.sqlite") == [changed]
    assert store.done_of("alice") == {("i1", ("base", "tuned"))}


def test_vote_validation(store):
    store.add_annotator("alice")
    v = _vote(store, "alice", "i1")
    swapped = Vote(v.annotator, v.item_id, v.task, v.right_model, v.left_model, "left", None, None, "", 1.0)
    with pytest.raises(FireflyError, match="sides swapped"):
        store.record_vote(swapped)
    with pytest.raises(FireflyError, match="choice"):
        store.record_vote(_vote(store, "alice", "i1", "A"))
    with pytest.raises(FireflyError, match="unknown annotator"):
        store.record_vote(_vote(store, "mallory", "i1"))
    assert store.votes_of("alice") == []


def test_votes_of_is_per_annotator(store):
    for who in ("alice", "bob"):
        store.add_annotator(who)
    store.record_vote(_vote(store, "alice", "i1", "left"))
    store.record_vote(_vote(store, "bob", "i1", "right"))
    assert [v.choice for v in store.votes_of("alice")] == ["left"]
    assert [v.choice for v in store.votes_of("bob")] == ["right"]


def test_concurrent_votes_from_threads(store):
    names = [f"a{k}" for k in range(8)]
    for n in names:
        store.add_annotator(n)

    def work(n):
        for k in range(25):
            store.record_vote(_vote(store, n, f"i{k}", "tie", created_at=float(k)))

    threads = [threading.Thread(target=work, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    votes = read_votes(store.path)
    assert len(votes) == 200 and len({(v.annotator, v.item_id) for v in votes}) == 200


def test_export_csv(store, tmp_path):
    store.add_annotator("alice")
    store.record_vote(_vote(store, "alice", "i1", "left", comment='say "hi", ok', left_correct=False))
    assert store.export_csv(tmp_path / "out.csv") == 1
    rows = list(csv.DictReader(open(tmp_path / "out.csv", encoding="utf-8")))
    assert len(rows) == 1
    assert rows[0]["comment"] == 'say "hi", ok' and rows[0]["choice"] == "left"
    assert rows[0]["left_correct"] == "False" and rows[0]["right_correct"] == ""
    assert {rows[0]["left_model"], rows[0]["right_model"]} == {"base", "tuned"}


def test_reopen_other_set_or_models_refused_and_untouched(store, tmp_path):
    store.add_annotator("alice")
    store.record_vote(_vote(store, "alice", "i1"))
    store.close()
    before = read_votes(tmp_path / "votes.sqlite")
    with pytest.raises(FireflyError, match="database was made for set zh130"):
        VoteStore(tmp_path / "votes.sqlite", "other", "x" * 64, ["base", "tuned"])
    with pytest.raises(FireflyError, match="made for models"):
        VoteStore(tmp_path / "votes.sqlite", "zh130", "h" * 64, ["base", "other"])
    assert read_votes(tmp_path / "votes.sqlite") == before
    again = VoteStore(tmp_path / "votes.sqlite", "zh130", "h" * 64, ["tuned", "base"])
    assert again.votes_of("alice") == before
    again.close()


def test_readers_reject_missing_and_foreign_files(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_votes(tmp_path / "nope.sqlite")
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(InputError, match="not a firefly votes database"):
        read_meta(other)
    with pytest.raises(InputError, match="not a firefly votes database"):
        VoteStore(other, "zh130", "h", ["a", "b"])


def test_all_pairs():
    assert all_pairs(["b", "a", "c"]) == [("a", "b"), ("b", "c"), ("a", "c")]


def test_close_checkpoints_into_one_file_and_is_idempotent(store, tmp_path):
    import shutil

    store.add_annotator("alice")
    for k in range(5):
        store.record_vote(_vote(store, "alice", f"i{k}"))
    wal = tmp_path / "votes.sqlite-wal"
    assert wal.stat().st_size > 0
    store.close()
    store.close()
    assert not wal.exists() or wal.stat().st_size == 0
    shutil.copy(tmp_path / "votes.sqlite", tmp_path / "copy.sqlite")
    assert sqlite3.connect(tmp_path / "copy.sqlite").execute("SELECT count(*) FROM votes").fetchone()[0] == 5


def test_wrong_language_flags_stored_and_updated(store):
    store.add_annotator("alice")
    v = _vote(store, "alice", "g1", "left", task="generation")
    flagged = Vote(*[getattr(v, f) for f in ("annotator", "item_id", "task", "left_model", "right_model", "choice",
                                             "left_correct", "right_correct", "comment", "created_at")], True, False)
    store.record_vote(flagged)
    assert store.votes_of("alice") == [flagged]
    unflagged = Vote(*[getattr(flagged, f) for f in ("annotator", "item_id", "task", "left_model", "right_model",
                                                     "choice", "left_correct", "right_correct", "comment")], 5.0,
                     False, False)
    store.record_vote(unflagged)  # only the flags differ: the vote is replaced
    assert store.votes_of("alice") == [unflagged]
