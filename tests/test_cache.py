import pathlib

import pytest

from beneficial import cache


def test_stage_key_is_stable_and_canonical():
    a = cache.stage_key("world", {"seed": 1, "rho": 0.9, "domains": ("health", "law")}, "3")
    b = cache.stage_key("world", {"domains": ["health", "law"], "rho": 0.9, "seed": 1}, "3")
    assert a == b
    assert len(a) == 16 and int(a, 16) >= 0
    # Pinned: the key must not change across processes, Python versions or machines.
    assert cache.stage_key("s", {"x": 1}, "v") == cache.stage_key("s", {"x": 1}, "v")
    assert cache.stage_key("s", {"x": 1}, "v") == "824a248b11ecde01"


@pytest.mark.parametrize("change", [
    dict(stage="tokenizer"), dict(fields={"seed": 2, "rho": 0.9}), dict(version="4"),
    dict(fields={"seed": 1, "rho": 0.9, "extra": None}),
])
def test_stage_key_changes_with_stage_fields_version(change):
    base = dict(stage="world", fields={"seed": 1, "rho": 0.9}, version="3")
    assert cache.stage_key(**base) != cache.stage_key(**{**base, **change})


def test_stage_key_rejects_unhashable_values():
    with pytest.raises(TypeError, match="cannot hash"):
        cache.stage_key("s", {"f": object()}, "1")


def test_stage_dir(tmp_path):
    assert cache.stage_dir(tmp_path, "world", "abc") == tmp_path / "cache" / "world-abc"


def test_building_success_is_atomic(tmp_path):
    path = cache.stage_dir(tmp_path, "world", "k1")
    assert not cache.is_done(path)
    with cache.building(path) as tmp:
        assert tmp != path and tmp.parent == path.parent
        assert not path.exists()  # nothing visible while building
        (tmp / "data.txt").write_text("hello")
    assert cache.is_done(path)
    assert (path / "data.txt").read_text() == "hello"
    assert sorted(p.name for p in path.parent.iterdir()) == ["world-k1"]  # no temp left


def test_building_failure_leaves_nothing(tmp_path):
    path = cache.stage_dir(tmp_path, "world", "k2")
    with pytest.raises(RuntimeError, match="boom"):
        with cache.building(path) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("boom")
    assert not path.exists()
    assert list(path.parent.iterdir()) == []


def test_failed_rebuild_never_touches_finished_dir(tmp_path):
    path = cache.stage_dir(tmp_path, "world", "k3")
    with cache.building(path) as tmp:
        (tmp / "data.txt").write_text("good")
    with pytest.raises(FileExistsError):
        with cache.building(path) as tmp:
            (tmp / "data.txt").write_text("bad")
    assert (path / "data.txt").read_text() == "good" and cache.is_done(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["world-k3"]


def test_unfinished_leftover_is_replaced(tmp_path):
    path = cache.stage_dir(tmp_path, "world", "k4")
    path.mkdir(parents=True)
    (path / "junk").write_text("from a crashed tool")
    with cache.building(path) as tmp:
        (tmp / "data.txt").write_text("new")
    assert cache.is_done(path) and not (path / "junk").exists()


def test_is_done_accepts_str(tmp_path):
    assert not cache.is_done(str(tmp_path))
    (pathlib.Path(tmp_path) / cache.DONE).write_text("ok")
    assert cache.is_done(str(tmp_path))


def test_base_key_ignores_the_competence_checks_only():
    """Competence checks do not change the weights (the `competence` stage reruns them), so
    their sizes must not retrain a base; every other pretrain knob must."""
    from beneficial.train.pretrain import base_key
    from configs.common import get_base_config
    c = get_base_config("smoke")
    key = base_key(c, "d", "t")
    c.pretrain.competence.n_gap_pairs = 3
    c.pretrain.competence.n_probes = 5
    assert base_key(c, "d", "t") == key
    c.pretrain.steps += 1
    assert base_key(c, "d", "t") != key
