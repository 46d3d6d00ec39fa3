"""RequestCache reads and writes the file lm-eval's sqlitedict cache keeps, both ways, and commits on a clock."""
from sqlitedict import SqliteDict

from firefly_eval.request_cache import RequestCache


def test_same_file_as_lm_eval_s_cache_both_ways(tmp_path):
    path = str(tmp_path / "requests_rank0.db")
    theirs = SqliteDict(path, autocommit=True)
    theirs["a"] = (-1.25, True)
    theirs.close()
    ours = RequestCache(path)
    assert "a" in ours and ours["a"] == (-1.25, True) and "b" not in ours
    ours["b"] = [0.5, False]
    ours.close()
    again = SqliteDict(path)
    assert again["b"] == [0.5, False] and len(again) == 2
    again.close()


def test_commits_on_a_clock(tmp_path):
    path = str(tmp_path / "c.db")
    ours = RequestCache(path, commit_seconds=3600)
    ours["x"] = 1
    assert "x" not in RequestCache(path)  # not yet committed: another reader does not see it
    ours.commit()
    assert RequestCache(path)["x"] == 1
    every_write = RequestCache(path, commit_seconds=0)
    every_write["y"] = 2
    assert RequestCache(path)["y"] == 2
