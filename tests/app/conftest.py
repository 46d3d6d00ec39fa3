"""Fixtures of the judging app tests: a small evaluation set, two models' answers, a running server."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from firefly_eval.eval_set import load_set

REPO = Path(__file__).resolve().parents[2]
MODELS = ("model-base-7f3", "model-tuned-9c1")  # distinctive names, searched for in what the browser gets
XSS_ANSWERS = ('<script>window.pwned=1</script>答案见上。',
               '<img src=x onerror="window.pwned=1"> [link](javascript:window.pwned=1) 好的。')


def write_set(path: Path, n: int) -> Path:
    """n items: every third objective with a number checker, the rest open-ended, all in Chinese."""
    with open(path, "w", encoding="utf-8") as f:
        for k in range(n):
            objective = k % 3 == 0
            item = {"id": f"item-{k:03d}", "task": "math" if objective else "generation",
                    "prompt": f"第{k}题：{'计算 %d 加 %d 等于多少？' % (k, k) if objective else '写一句关于春天的话。'}",
                    "objective": objective, "reference": str(2 * k) if objective else None,
                    "checker": {"type": "number", "value": 2 * k} if objective else None}
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    return path


def write_answer_file(path: Path, set_path: Path, model: str, answers: dict[str, str]) -> Path:
    """An answers file (as `firefly-eval generate` writes) with the given answer for each item id."""
    eval_set = load_set(set_path)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"format": 1, "kind": "answers_header", "model": model, "ckpt": model,
                            "set": str(set_path), "set_hash": eval_set.hash, "sampling": {}, "seed": 0}) + "\n")
        for k, it in enumerate(eval_set.items):
            f.write(json.dumps({"id": it.id, "answer": answers[it.id], "seed": k, "tokens": 10}, ensure_ascii=False) + "\n")
    return path


def write_answers(path: Path, set_path: Path, model: str, right: bool, xss_item: str | None = None) -> Path:
    eval_set = load_set(set_path)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"format": 1, "kind": "answers_header", "model": model, "ckpt": model,
                            "set": str(set_path), "set_hash": eval_set.hash, "sampling": {}, "seed": 0}) + "\n")
        for k, it in enumerate(eval_set.items):
            if it.id == xss_item:
                answer = XSS_ANSWERS[0] if right else XSS_ANSWERS[1]
            elif it.objective:
                answer = f"答案是 {2 * k if right else 2 * k + 1}。"
            else:
                answer = f"春风{'轻轻' if right else '慢慢'}吹过田野。\n\n```python\nprint('春天 {k}')\n```"
            f.write(json.dumps({"id": it.id, "answer": answer, "seed": k, "tokens": 10}, ensure_ascii=False) + "\n")
    return path


def make_judge_files(folder: Path, n: int = 12):
    """(set, [answers_base, answers_tuned], db) for an n-item set; item-001 carries XSS answers."""
    set_path = write_set(folder / "mini.jsonl", n)
    answers = [write_answers(folder / "base.jsonl", set_path, MODELS[0], right=False, xss_item="item-001"),
               write_answers(folder / "tuned.jsonl", set_path, MODELS[1], right=True, xss_item="item-001")]
    return set_path, answers, folder / "votes.sqlite"


@pytest.fixture
def judge_files(tmp_path):
    return make_judge_files(tmp_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def judge_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "human_eval_app.cli", *map(str, args)]


def judge_env() -> dict:
    return {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO),
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def add_annotator(db, name, admin=False, set_path=None, answers=()) -> str:
    extra = ["--admin"] if admin else []
    if set_path:
        extra += ["--set", set_path, "--answers", *answers]
    out = subprocess.run(judge_cmd("add-annotator", name, "--db", db, *extra), env=judge_env(), cwd=REPO,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


class Server:
    """`firefly-judge serve` in a subprocess on a free port."""

    def __init__(self, set_path, answers, db, log_path):
        self.args = (set_path, answers, db)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc = None

    def start(self, timeout=90):
        set_path, answers, db = self.args
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(judge_cmd("--set", set_path, "--answers", *answers, "--db", db,
                                               "--port", self.port), env=judge_env(), cwd=REPO,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {Path(self.log_path).read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/gradio_api/info", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"server did not start: {Path(self.log_path).read_text()[-3000:]}")

    def kill(self):
        self.proc.kill()  # SIGKILL: no clean shutdown
        self.proc.wait()
        self.log.close()

    def terminate(self) -> int:
        """SIGTERM, as a service manager stops it; returns the exit code."""
        self.proc.terminate()
        code = self.proc.wait(30)
        self.log.close()
        return code

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()


@pytest.fixture
def server_factory(tmp_path):
    servers = []

    def make(set_path, answers, db):
        s = Server(set_path, answers, db, tmp_path / f"server{len(servers)}.log")
        servers.append(s)
        return s.start()

    yield make
    for s in servers:
        s.stop()


class HttpSession:
    """One browser tab's traffic, by hand: the page config and queued events over raw HTTP (what the
    Gradio frontend sends and receives). `raw` keeps every byte received, to search for leaks."""

    def __init__(self, url: str):
        import uuid

        import requests

        self.url, self.http = url, requests.Session()
        self.http.trust_env = False
        self.session_hash = uuid.uuid4().hex[:11]
        self.raw: list[str] = []
        self.config = self.get("/config").json()
        self.deps = {d["api_name"]: d for d in self.config["dependencies"] if d.get("api_name")}

    def get(self, path: str):
        r = self.http.get(self.url + path, timeout=30)
        r.raise_for_status()
        self.raw.append(r.text)
        return r

    def call(self, api_name: str, *values) -> dict:
        """Run an event as the frontend does; returns the final `process_completed` message."""
        dep = self.deps[api_name]
        data = list(values) + [None] * (len(dep["inputs"]) - len(values))  # state inputs are sent as null
        r = self.http.post(self.url + "/gradio_api/queue/join", timeout=30,
                           json={"data": data, "fn_index": dep["id"], "session_hash": self.session_hash,
                                 "event_data": None, "trigger_id": dep["targets"][0][0] if dep["targets"] else None})
        r.raise_for_status()
        self.raw.append(r.text)
        event_id = r.json()["event_id"]
        result = None
        # read to the server's close_stream, as the frontend does: leaving earlier makes the server see a
        # disconnect, and it then cancels this session's next event
        with self.http.get(self.url + "/gradio_api/queue/data", params={"session_hash": self.session_hash},
                           stream=True, timeout=60) as stream:
            for line in stream.iter_lines(decode_unicode=True):
                if not line:
                    continue
                self.raw.append(line)
                if line.startswith("data:"):
                    msg = json.loads(line[5:])
                    if msg.get("msg") == "process_completed" and msg.get("event_id") == event_id:
                        result = msg
                    if msg.get("msg") == "close_stream":
                        break
        if result is None:
            raise RuntimeError(f"no result for {api_name}")
        return result

    def outputs(self, msg: dict) -> list:
        return msg["output"].get("data", []) if msg.get("success") else []

    def text(self, msg: dict) -> str:
        return json.dumps(self.outputs(msg), ensure_ascii=False)


@pytest.fixture(scope="session")
def browser():
    """Headless Debian chromium driven by playwright (never `playwright install`)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium",
                              args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


def settle(page):
    """Wait until no Gradio event is pending on the page (no 'processing' indicator)."""
    page.wait_for_function("() => !document.body.innerText.includes('processing |')")


def reopen(page, tries=3):
    """Reload a page after a server restart. Gradio's page polls a lost server every 2 s and reloads itself once
    it answers again; when that reload lands during ours, chromium aborts ours (net::ERR_ABORTED), so go again."""
    from playwright.sync_api import Error

    for attempt in range(tries):
        try:
            page.goto(page.url)
            return
        except Error as e:
            if "ERR_ABORTED" not in str(e) or attempt == tries - 1:
                raise


@pytest.fixture(scope="session")
def kit():
    """The helpers above, as a fixture: test modules cannot import conftest under --import-mode=importlib."""
    from types import SimpleNamespace

    return SimpleNamespace(MODELS=MODELS, write_set=write_set, write_answers=write_answers,
                           write_answer_file=write_answer_file, make_judge_files=make_judge_files,
                           add_annotator=add_annotator, Server=Server, HttpSession=HttpSession, settle=settle, reopen=reopen,
                           judge_cmd=judge_cmd, judge_env=judge_env, REPO=REPO)
