"""Every config file builds and validates; bad values fail up front naming the field."""
import pathlib
import subprocess
import sys

import pytest
from ml_collections import config_flags  # noqa: F401  (the loader main.py uses)

from beneficial.config import ConfigError, parse_arg, validate

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Pipeline configs (launch/main.py); token_world.py feeds launch/token_world.py (tests/test_token_world.py).
CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.py")
                 if p.name not in ("__init__.py", "common.py", "token_world.py"))


def _load(name, arg=None):
    import importlib
    mod = importlib.import_module(f"configs.{name}")
    return mod.get_config(arg)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
@pytest.mark.parametrize("arg", [None, "smoke"])
def test_every_config_builds_and_validates(path, arg):
    c = _load(path.stem, arg)
    validate(c, n_devices=8)
    if all(v in (-1, 1) for v in c.mesh.shape.values()):  # fixed multi-chip meshes need their chips
        validate(c, n_devices=1)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_sequence_knobs_are_tuples_so_the_command_line_can_set_them(path):
    """ml_collections' flags cannot override a list field (`--config.world.turn_weights=...`
    fails to parse); tuples they can. mesh.rules (nested pairs) is set in config files."""
    import ml_collections

    def lists(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, ml_collections.ConfigDict):
                yield from lists(v, f"{prefix}{k}.")
            elif isinstance(v, list):
                yield prefix + k
    assert [f for f in lists(_load(path.stem)) if f != "mesh.rules"] == []


def test_main_accepts_a_tuple_override_of_a_world_knob(tmp_path):
    out = subprocess.run([sys.executable, "launch/main.py", "--config=configs/data.py:smoke",
                          f"--config.workdir={tmp_path}", "--config.stages=()",
                          "--config.world.turn_weights=(0.0,0.0,0.5,0.5)", "--config.data.summary_samples=0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]


def test_unknown_arg_key_fails():
    with pytest.raises(ValueError, match="'modle' is unknown"):
        _load("sample", "modle=tiny")
    assert parse_arg("smoke,seed=3", smoke=False, seed=0).seed == 3


@pytest.mark.parametrize("field,value,match", [
    ("model.preset", "gpt5", "model.preset='gpt5'"),
    ("world.prior_aligned", 1.5, "world.prior_aligned=1.5"),
    ("mesh.indivisible", "maybe", "mesh.indivisible"),
])
def test_bad_values_name_the_field(field, value, match):
    c = _load("sample")
    section, key = field.split(".")
    c[section][key] = value
    with pytest.raises(ConfigError, match=match):
        validate(c, n_devices=1)


def test_batch_not_divisible_by_data_axes_fails():
    c = _load("sample")
    c.pretrain.batch_size = 12
    c.mesh.shape = {"data": 8, "fsdp": 1, "tensor": 1}
    with pytest.raises(ConfigError, match=r"pretrain.batch_size=12 is invalid.*divisible"):
        validate(c, n_devices=8)


def test_mesh_larger_than_devices_fails():
    c = _load("sample")
    c.mesh.shape = {"data": 16, "fsdp": 1, "tensor": 1}
    with pytest.raises(ConfigError, match=r"config.mesh.shape.*16 devices"):
        validate(c, n_devices=8)


def test_main_rejects_a_typo_in_an_override():
    out = subprocess.run([sys.executable, "launch/main.py", "--config=configs/sample.py:smoke",
                          "--config.pretrain.stepz=3"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "stepz" in out.stderr


def test_main_prints_a_sharding_summary_and_samples(tmp_path):
    out = subprocess.run([sys.executable, "launch/main.py", "--config=configs/sample.py:smoke",
                          f"--config.workdir={tmp_path}", "--config.mesh.shape.data=1"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "parameters on mesh" in out.stdout and out.stdout.count("->") == 4
