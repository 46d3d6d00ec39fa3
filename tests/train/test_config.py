from dataclasses import dataclass, field

import pytest

from firefly_core.errors import FireflyError
from firefly_train.config import load_config, parse_overrides


@dataclass
class Lora:
    r: int = 8
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])


@dataclass
class Cfg:
    lr: float = 1e-4
    bf16: bool = False
    lora: Lora = field(default_factory=Lora)


def test_yaml_then_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lr: 2e-4\nlora:\n  r: 64\n")
    cfg = load_config(Cfg, p, ["--lora.r", "16", "--bf16", "--lora.target_modules=[q_proj,v_proj]"])
    assert cfg.lr == 2e-4 and cfg.bf16 is True and cfg.lora.r == 16
    assert cfg.lora.target_modules == ["q_proj", "v_proj"]


def test_unknown_key_names_file_and_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lora:\n  rank: 64\n")
    with pytest.raises(FireflyError, match=r"c.yaml.*unknown key 'rank'"):
        load_config(Cfg, p)


def test_wrong_type_is_rejected():
    with pytest.raises(FireflyError, match="key 'r'"):
        load_config(Cfg, None, ["--lora.r", "big"])
    assert parse_overrides(["--a-b", "3"]) == {"a_b": 3}
