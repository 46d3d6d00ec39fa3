"""firefly-judge on bad input: one clear line naming file and line, exit 2, the database untouched."""
import csv
import hashlib

import pytest

from firefly_eval.votes import VoteStore, read_votes
from human_eval_app.cli import main


def _serve(set_path, answers, db):
    return main(["--set", str(set_path), "--answers", *map(str, answers), "--db", str(db)])


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def voted_db(judge_files):
    """The database after one vote, closed (so the file holds everything)."""
    set_path, answers, db = judge_files
    from human_eval_app.session import Judging

    j = Judging.open(set_path, answers, db)
    j.store.add_annotator("alice")
    j.vote("alice", "item-002#0", "A")
    j.store.close()
    return db


def _check(capsys, rc, *needles):
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err


def test_malformed_set_names_file_and_line(judge_files, capsys):
    set_path, answers, db = judge_files
    lines = set_path.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2][:-5]
    set_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _check(capsys, _serve(set_path, answers, db), "mini.jsonl:3", "invalid JSON")
    assert not db.exists()


def test_malformed_answers_names_file_and_line(judge_files, voted_db, capsys):
    set_path, answers, db = judge_files
    before = _sha(db)
    lines = answers[1].read_text(encoding="utf-8").splitlines()
    lines[4] = '{"id": "item-003"}'
    answers[1].write_text("\n".join(lines) + "\n", encoding="utf-8")
    _check(capsys, _serve(set_path, answers, db), "tuned.jsonl:5", "answer")
    assert _sha(db) == before


def test_answers_not_covering_the_set(judge_files, capsys):
    set_path, answers, db = judge_files
    lines = answers[0].read_text(encoding="utf-8").splitlines()
    answers[0].write_text("\n".join(lines[:-2]) + "\n", encoding="utf-8")
    _check(capsys, _serve(set_path, answers, db), "does not answer every item", "item-010, item-011")
    assert not db.exists()


def test_database_from_another_set(judge_files, voted_db, tmp_path, capsys, kit):
    set_path, answers, db = judge_files
    before, votes = _sha(db), read_votes(db)
    other = kit.write_set(tmp_path / "other.jsonl", 5)
    other_answers = [kit.write_answers(tmp_path / f"o{k}.jsonl", other, m, right=k == 1)
                     for k, m in enumerate(kit.MODELS)]
    _check(capsys, _serve(other, other_answers, db), "database was made for set mini")
    assert _sha(db) == before and read_votes(db) == votes


def test_answers_for_another_set(judge_files, tmp_path, capsys, kit):
    set_path, answers, db = judge_files
    other = kit.write_set(tmp_path / "other.jsonl", 12)
    json_lines = other.read_text(encoding="utf-8").splitlines()
    json_lines[0] = json_lines[0].replace("第0题", "第零题")
    other.write_text("\n".join(json_lines) + "\n", encoding="utf-8")
    _check(capsys, _serve(other, answers, db), "answers a different evaluation set")
    assert not db.exists()


def test_model_pairs_needed(judge_files, capsys):
    set_path, answers, db = judge_files
    _check(capsys, _serve(set_path, answers[:1], db), "at least two answer files")
    _check(capsys, _serve(set_path, [answers[0], answers[0]], db), "same model")
    assert not db.exists()


def test_not_a_votes_database(judge_files, capsys):
    set_path, answers, db = judge_files
    db.write_text("hello\n")
    _check(capsys, _serve(set_path, answers, db), "votes.sqlite")
    assert db.read_text() == "hello\n"


def test_add_annotator_and_export(judge_files, voted_db, tmp_path, capsys):
    set_path, answers, db = judge_files
    _check(capsys, main(["add-annotator", "bob", "--db", str(tmp_path / "none.sqlite")]), "no votes database")
    _check(capsys, main(["add-annotator", "alice", "--db", str(db)]), "already exists")
    assert main(["add-annotator", "bob", "--db", str(db), "--admin"]) == 0
    token = capsys.readouterr().out.strip()
    with VoteStore.open_existing(db) as store:
        assert store.annotator_for(token) == ("bob", True)
    assert main(["export", "--db", str(db), "-o", str(tmp_path / "v.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "v.csv", encoding="utf-8")))
    assert [(r["annotator"], r["item_id"], r["choice"]) for r in rows] == [("alice", "item-002", "left")]
    _check(capsys, main(["export", "--db", str(set_path), "-o", str(tmp_path / "x.csv")]), "mini.jsonl")
    assert not (tmp_path / "x.csv").exists()


def test_add_annotator_creates_database(judge_files, capsys):
    set_path, answers, db = judge_files
    assert main(["add-annotator", "root", "--db", str(db), "--admin", "--set", str(set_path),
                 "--answers", *map(str, answers)]) == 0
    assert len(capsys.readouterr().out.strip()) >= 32
    assert read_votes(db) == []


def test_export_to_a_folder_is_one_line(judge_files, voted_db, tmp_path, capsys):
    _check(capsys, main(["export", "--db", str(voted_db), "-o", str(tmp_path)]), f"cannot write {tmp_path}",
           "Is a directory")
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_reissue_token(judge_files, voted_db, capsys):
    with VoteStore.open_existing(voted_db) as store:
        old = store.add_annotator("bob")
    assert main(["reissue-token", "bob", "--db", str(voted_db)]) == 0
    new = capsys.readouterr().out.strip()
    with VoteStore.open_existing(voted_db) as store:
        assert store.annotator_for(new) == ("bob", False) and store.annotator_for(old) is None
    _check(capsys, main(["reissue-token", "nobody", "--db", str(voted_db)]), "no annotator 'nobody'", "alice, bob")
    assert [v.annotator for v in read_votes(voted_db)] == ["alice"]


def test_schema_1_database_is_upgraded_in_place(judge_files, voted_db):
    """A database from before the wrong-language columns: read as is, upgraded when the app opens it."""
    import sqlite3

    conn = sqlite3.connect(voted_db)
    conn.execute("ALTER TABLE votes DROP COLUMN left_wrong_language")
    conn.execute("ALTER TABLE votes DROP COLUMN right_wrong_language")
    conn.execute("DELETE FROM meta WHERE key = 'browser_key'")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    conn.commit()
    conn.close()
    [before] = read_votes(voted_db)
    assert (before.choice, before.left_wrong_language) == ("left", None)
    with VoteStore.open_existing(voted_db) as store:
        assert len(store.browser_key) == 64 and store.votes_of("alice") == [before]
        key = store.browser_key
    with VoteStore.open_existing(voted_db) as store:
        assert store.browser_key == key  # kept: browsers' remembered tokens still open after a restart


def test_damaged_xlsx_set_is_one_line(judge_files, tmp_path, capsys):
    set_path, answers, db = judge_files
    bad = tmp_path / "seed.xlsx"
    bad.write_bytes(b"PK\x03\x04" + b"\x00" * 200)  # a zip header, then nothing: a truncated download
    _check(capsys, _serve(bad, answers, db), f"{bad}: damaged .xlsx file")
    assert not db.exists()
