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


@pytest.fixture
def judge_files(tmp_path):
    """(set, [answers_base, answers_tuned], db) for a 12-item set; item-001 carries XSS answers."""
    set_path = write_set(tmp_path / "mini.jsonl", 12)
    answers = [write_answers(tmp_path / "base.jsonl", set_path, MODELS[0], right=False, xss_item="item-001"),
               write_answers(tmp_path / "tuned.jsonl", set_path, MODELS[1], right=True, xss_item="item-001")]
    return set_path, answers, tmp_path / "votes.sqlite"


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
