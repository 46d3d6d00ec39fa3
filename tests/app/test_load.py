"""Load: 20 annotators voting at once over HTTP (the Gradio queue endpoints the browser uses), the server
SIGKILLed mid-run and restarted: every acknowledged vote is in the database, none twice."""
import hashlib
import re
import threading
import time

import pytest
import requests

from human_eval_app.session import Judging

N_ANNOTATORS = 20
HANDLE = re.compile(r"^item-\d{3}#\d+$")
API = ("vote_a", "vote_tie", "vote_b")
CHOICE = {"vote_a": "left", "vote_tie": "tie", "vote_b": "right"}


def _handle(outputs) -> str | None:
    return next((o for o in outputs if isinstance(o, str) and HANDLE.match(o)), None)


def run_load(kit, folder, n_items: int) -> dict:
    set_path, answers, db = kit.make_judge_files(folder, n_items)
    judging = Judging.open(set_path, answers, db)
    tokens = {f"annotator{k:02d}": judging.store.add_annotator(f"annotator{k:02d}") for k in range(N_ANNOTATORS)}
    judging.store.close()
    server = kit.Server(set_path, answers, db, folder / "server.log").start()
    acked: dict[str, list[tuple[str, str]]] = {name: [] for name in tokens}
    errors, up = [], threading.Event()
    up.set()

    def annotate(name, token):
        try:
            finished, retries = False, 0
            while not finished:  # until a sign-in finds nothing left to judge
                up.wait(120)
                retries += 1
                assert retries < 50, "too many reconnections"
                try:
                    s = kit.HttpSession(server.url)
                    handle = _handle(s.outputs(s.call("sign_in", token)))
                    finished = handle is None
                    while handle:
                        api = API[hashlib.sha256(f"{name}{handle}".encode()).digest()[0] % 3]
                        msg = s.call(api, handle, "correct", "wrong", f"{name} {handle}")
                        if not msg["success"]:
                            raise RuntimeError(msg)
                        acked[name].append((handle, CHOICE[api]))  # acknowledged: the response came back
                        handle = _handle(s.outputs(msg))
                    finished = True
                except (requests.RequestException, RuntimeError, KeyError, ValueError):
                    time.sleep(0.2)  # the server went away: sign in again and resume
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(f"{name}: {e!r}")

    threads = [threading.Thread(target=annotate, args=item) for item in tokens.items()]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    while sum(map(len, acked.values())) < N_ANNOTATORS * n_items // 3 and any(t.is_alive() for t in threads):
        time.sleep(0.05)
    up.clear()
    server.kill()
    killed_at = sum(map(len, acked.values()))
    server.start()
    up.set()
    for t in threads:
        t.join(600)
    wall = time.monotonic() - t0
    server.stop()
    from firefly_eval.votes import read_votes

    return {"acked": acked, "errors": errors, "votes": read_votes(db), "killed_at": killed_at, "wall_s": wall}


def _check(result, n_items):
    assert result["errors"] == []
    votes = result["votes"]
    keys = [(v.annotator, v.item_id) for v in votes]
    assert len(keys) == len(set(keys)) == N_ANNOTATORS * n_items  # everything, nothing twice
    stored = {(v.annotator, v.item_id): v for v in votes}
    for name, acks in result["acked"].items():
        for handle, choice in acks:
            vote = stored[(name, handle.split("#")[0])]
            assert vote.choice == choice and vote.comment == f"{name} {handle}"
    assert 0 < result["killed_at"] < N_ANNOTATORS * n_items
    print(f"\n{N_ANNOTATORS} annotators x {n_items} votes: {result['wall_s']:.1f} s "
          f"(SIGKILL after {result['killed_at']} acknowledged votes)")


def test_load_small_with_sigkill(tmp_path, kit):
    _check(run_load(kit, tmp_path, 20), 20)


@pytest.mark.slow
def test_load_full_130_with_sigkill(tmp_path, kit):
    _check(run_load(kit, tmp_path, 130), 130)
