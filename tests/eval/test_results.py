"""What cmmlu and leaderboard share: the resumable work folder is keyed by everything that changes results."""
from pathlib import Path

from firefly_eval.results import resume_dir


def test_resume_dir_is_stable_per_key_and_beside_the_output():
    out = Path("results/cmmlu.json")
    key = {"model": "abc", "limit": 3, "subjects": ["economics"]}
    first = resume_dir(out, "opencompass", key)
    assert first.parent == Path("results/cmmlu.opencompass") and len(first.name) == 12
    assert resume_dir(out, "opencompass", dict(reversed(list(key.items())))) == first
    assert resume_dir(out, "opencompass", {**key, "limit": 4}) != first
    assert resume_dir(Path("other.json"), "opencompass", key).name == first.name
