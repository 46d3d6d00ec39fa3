"""The house rules for imports (README "Design"), read from the source:

- `firefly_core` stands on no product; `human_eval_app` uses no training code; `firefly_eval` uses training code
  only where it really evaluates what training builds (the vocabulary tools);
- a function-local import of a project module is allowed only where that module pulls in a heavy third-party
  library at import time (`HEAVY`): lazy imports keep a command from loading torch or gradio it does not use,
  and nothing else hides the dependency graph.
"""
import ast
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("firefly_core", "firefly_train", "firefly_eval", "human_eval_app")
# Third-party libraries that take a noticeable time to import (or pull in CUDA, a web server, a plotting backend).
HEAVY = {"torch", "transformers", "peft", "bitsandbytes", "accelerate", "datasets", "gradio", "opencompass",
         "mmengine", "lm_eval", "matplotlib", "pandas", "scipy", "numpy", "sentencepiece", "tokenizers",
         "safetensors", "gguf", "huggingface_hub", "tensorboard", "openpyxl", "fastapi", "uvicorn"}
# firefly_eval modules that evaluate what training builds, and the training code they use for it
EVAL_USES_TRAINING = {
    "firefly_eval.bits_per_char": {"firefly_train.vocab.stats", "firefly_train.vocab.embeddings"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _targets(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules an import statement loads (`from pkg import mod` names the submodule when it is one)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    return list(dict.fromkeys(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names))


def _imports(name: str) -> tuple[list[str], list[tuple[int, str]]]:
    """(top-level imports, [(line, function-local import)]) of one project module."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    top, local = [], []

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)) and not getattr(child, "level", 0):
                for target in _targets(child):
                    (local.append((child.lineno, target)) if in_function else top.append(target))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return top, local


@cache
def _heavy(name: str, seen: frozenset = frozenset()) -> bool:
    """Does importing this project module import a HEAVY library (directly or through project modules)?"""
    for target in _imports(name)[0]:
        if target.split(".")[0] in HEAVY:
            return True
        if target in MODULES and target not in seen and _heavy(target, seen | {name}):
            return True
    return False


def _project_imports(name: str) -> set[str]:
    top, local = _imports(name)
    return {t for t in top + [t for _, t in local] if t.split(".")[0] in PACKAGES}


def test_function_local_imports_of_project_modules_are_only_of_heavy_ones():
    light = [f"{MODULES[name].relative_to(REPO)}:{line}: {target}"
             for name in MODULES for line, target in _imports(name)[1]
             if target.split(".")[0] in PACKAGES and not _heavy(target)]
    assert not light, "import these light project modules at the top of the file:\n" + "\n".join(light)


def test_the_checker_sees_heavy_and_light_modules():
    assert _heavy("firefly_train.trainer") and _heavy("human_eval_app.app")  # torch; gradio
    assert not _heavy("firefly_core.errors") and not _heavy("firefly_core.io") and not _heavy("firefly_core.models")


def test_core_stands_on_no_product():
    for name in (n for n in MODULES if n.startswith("firefly_core")):
        assert {i.split(".")[0] for i in _project_imports(name)} <= {"firefly_core"}, name


def test_app_and_evaluation_use_training_code_only_where_they_evaluate_it():
    for name in (n for n in MODULES if n.startswith(("firefly_eval", "human_eval_app"))):
        training = {i for i in _project_imports(name) if i.startswith("firefly_train")}
        assert training <= EVAL_USES_TRAINING.get(name, set()), f"{name} imports {sorted(training)}"
