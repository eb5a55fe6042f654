"""The benchmark scaffolding: TRL peer at a micro size, FLOP counts, ceilings, probes.

No timing assertions: only that every field is there and the counted work is right.
"""
import time

import pytest

from beneficial.bench import flops, machine, peak_memory, settings, timing
from beneficial.bench.ceiling import matmul_ceiling

MICRO = dict(hidden=32, layers=1, heads=2, kv_heads=2, intermediate=64, vocab=64, prompt_len=8,
             prompt_min_len=4, response_len=8, episodes_per_iteration=8, num_ppo_epochs=2,
             num_minibatches=2, threads=1)

FIELDS = ("framework", "available", "versions", "settings", "warmup", "iterations",
          "iteration_s", "iteration_median_s", "iteration_cpu_median_s", "phases_median_s",
          "phase_fraction", "train_s",
          "work", "work_mismatches", "params", "flops", "achieved_flops_per_s",
          "peak_rss_bytes", "threads", "config")
WORK = ("episodes", "generated_tokens", "sequence_len", "ppo_epochs", "minibatches_per_epoch",
        "minibatch_episodes", "optimizer_steps", "update_sequences", "backward_passes",
        "scoring_sequences")


def test_trl_ppo_micro_reports_every_field():
    pytest.importorskip("trl")
    from beneficial.bench.peers.trl_ppo import run_trl_ppo

    res = run_trl_ppo(MICRO, iterations=1, warmup=0)
    assert res["available"], res.get("reason")
    for k in FIELDS:
        assert k in res, k
    for k in ("generation", "scoring", "update", "other"):
        assert k in res["phases_median_s"] and res["phases_median_s"][k] >= 0
    for k in WORK:
        assert k in res["work"], k
    assert res["work_mismatches"] == []
    w = res["work"]
    assert w["optimizer_steps"] == MICRO["num_ppo_epochs"] * MICRO["num_minibatches"]
    assert w["scoring_sequences"] == dict(policy=0, ref=8, value=8, reward=8)
    # the analytic parameter count (used for the FLOPs) is the built models'
    want = settings.param_counts(res["settings"])
    assert {k: res["params"][k] for k in ("policy", "ref", "value", "reward")} == \
        {k: want[k] for k in ("policy", "ref", "value", "reward")}
    assert res["iterations"] == 1 and len(res["iteration_s"]) == 1
    assert res["peak_rss_bytes"] > 0


def test_matmul_ceiling_positive():
    assert matmul_ceiling("float32", n=256, repeats=3) > 0


def test_flops_phases_add_up_and_scale():
    s = settings.make_settings(**MICRO)
    f = flops.ppo_iteration_flops(s)
    assert f["total"] == pytest.approx(f["generation"] + f["scoring"] + f["update"])
    assert f["scoring"] == pytest.approx(f["scoring_ref"] + f["scoring_value"] + f["scoring_reward"])
    assert f["scoring_policy"] == 0
    assert flops.ppo_iteration_flops(s, policy_rescore=True)["scoring_policy"] == f["scoring_ref"]
    # update = 3 x forward per epoch: doubling the epochs doubles it, leaves the rest
    g = flops.ppo_iteration_flops(settings.make_settings(**{**MICRO, "num_ppo_epochs": 4}))
    assert g["update"] == pytest.approx(2 * f["update"])
    assert g["generation"] == f["generation"]
    # ~2 x matmul params per token: a one-token forward with no attention keys
    p = settings.param_counts(s)
    norms = (2 * s["layers"] + 1) * s["hidden"]
    body = p["policy"] - 2 * p["embedding"] - norms       # embedding and LM head out
    assert flops.forward_flops(s, 1, 1, keys=0) == 2 * body + 2 * p["embedding"]
    assert flops.check_work(flops.expected_work(s), s) == []
    assert flops.check_work({"optimizer_steps": 1}, s)


def test_settings_cells_and_prompts():
    cells = settings.cells()
    assert set(cells) == {"1.5M/r32", "1.5M/r128", "27M/r32", "27M/r128"}
    assert 1.3e6 < settings.param_counts(cells["1.5M/r32"])["policy"] < 1.7e6
    assert 25e6 < settings.param_counts(cells["27M/r32"])["policy"] < 29e6
    s = settings.make_settings(**MICRO)
    a, b = settings.make_prompts(s), settings.make_prompts(s)
    assert (a == b).all() and a.shape == (8, 8)
    assert (a[:, -1] != settings.PAD_ID).all()           # left-padded
    with pytest.raises(ValueError):
        settings.make_settings(hiden=3)


def test_timing_and_probes():
    t = timing.time_call(lambda: sum(range(100)), warmup=1, repeats=3)
    assert len(t.times) == 3 and t.median >= 0
    pt = timing.PhaseTimer()
    with pt.phase("a"):
        time.sleep(0.001)
    rec = pt.lap()
    assert rec["total"] >= rec["a"] > 0 and "other" in rec
    assert pt.summary()["iterations"] == 1
    current = peak_memory.current_rss_bytes()  # read before the peak: RSS can grow between the reads
    assert peak_memory.peak_rss_bytes() >= current > 0
    assert machine.describe()["cores"] >= 1
