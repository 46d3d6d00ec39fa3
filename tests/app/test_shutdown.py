"""SIGTERM and SIGINT stop the server cleanly: exit 0, the write-ahead log checkpointed into the database,
which is one file again (a copy of it alone has every vote)."""
import shutil
import signal
import sqlite3

import pytest


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_checkpoints_the_database(tmp_path, kit, sig):
    set_path, answers, db = kit.make_judge_files(tmp_path)
    token = kit.add_annotator(db, "alice", set_path=set_path, answers=answers)
    server = kit.Server(set_path, answers, db, tmp_path / "server.log").start()
    s = kit.HttpSession(server.url)
    acked = 0
    msg = s.call("sign_in", token)
    while acked < 6:
        handle = next(o for o in s.outputs(msg) if isinstance(o, str) and o.startswith("item-"))
        msg = s.call("vote_b", handle, "correct", "wrong", "")
        assert msg["success"]
        acked += 1
    wal = db.with_name(db.name + "-wal")
    assert wal.exists() and wal.stat().st_size > 0  # while serving, votes sit in the write-ahead log
    server.proc.send_signal(sig)
    assert server.proc.wait(30) == 0
    server.log.close()
    assert not wal.exists() or wal.stat().st_size == 0
    copy = tmp_path / "copy.sqlite"
    shutil.copy(db, copy)
    assert sqlite3.connect(copy).execute("SELECT count(*) FROM votes").fetchone()[0] == 6
    assert "checkpointed and closed" in (tmp_path / "server.log").read_text()
