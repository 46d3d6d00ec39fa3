"""What every result file records about where it came from: library versions and the code's git commit."""
from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path

# Every stage records the same list (the report shows where versions differ); one not installed is left out.
LIBRARIES = ("firefly", "torch", "transformers", "peft", "bitsandbytes", "accelerate", "tokenizers", "datasets",
             "opencompass", "lm-eval", "matplotlib", "pyyaml")


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    """HEAD of the checkout this code runs from, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, text=True,
                             capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
