"""The experiment command end to end: the :smoke experiment's report is internally
consistent, and a run killed with SIGKILL (mid-PPO, then mid-evaluation) and rerun ends
with exactly the results of an uninterrupted run."""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from beneficial.evals.results import results_diff

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}


def _cmd(workdir, *extra):
    return [sys.executable, "launch/main.py", "--config=configs/experiment.py:smoke", f"--config.workdir={workdir}",
            *extra]


def _run(workdir, *extra):
    out = subprocess.run(_cmd(workdir, *extra), cwd=ROOT, capture_output=True, text=True, timeout=1500, env=ENV)
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads((pathlib.Path(workdir) / "report" / "results.json").read_text())


def _check_consistent(r):
    arms = set(r["arms"])
    untargeted = [b for b in r["benchmarks"] if not b["targeted"]]
    assert len(r["benchmarks"]) >= 53 and len(untargeted) >= 40
    for b in r["benchmarks"]:  # every benchmark present for every arm, same instances
        assert set(b["rates"]) == arms, b["name"]
        assert all(len(v["per_seed"]) == len(r["arms"][a]["seeds"]) for a, v in b["rates"].items())
    # compute-matched arms: identical padded FLOPs, program by program and in total
    comps = [m["compute"] for m in r["arms"].values()]
    assert all(c["flops_by_program"] == comps[0]["flops_by_program"] and c["flops"] == comps[0]["flops"]
               for c in comps) and comps[0]["flops"] > 0
    for arm, h in r["headline"].items():  # the headline is what the rows imply
        rows = [b["vs_baseline"][arm] for b in untargeted]
        assert h["untargeted"] == len(untargeted)
        assert h["improved"] == sum(v["improved"] for v in rows)
        assert h["worsened"] == sum(v["worsened"] for v in rows)
        assert h["improved_holm"] == sum(v["improved_holm"] for v in rows)
        assert h["improved_external"] == sum(v["improved"] for v, b in zip(rows, untargeted)
                                             if b["source"] == "external")
    return arms


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The :smoke experiment, run once: (workdir, results)."""
    workdir = tmp_path_factory.mktemp("experiment")
    return workdir, _run(workdir)


def test_smoke_experiment_report_is_consistent(smoke):
    tmp_path, r = smoke
    arms = _check_consistent(r)
    assert arms == {"treatment", "baseline", "health_only", "placebo"}
    assert all(len(m["seeds"]) == 2 for m in r["arms"].values())
    assert r["arms"]["baseline"]["compute"]["special_episodes"] == 0
    assert all(r["arms"][a]["compute"]["special_episodes"] > 0 for a in ("treatment", "health_only", "placebo"))
    assert {"treatment-placebo", "health_only-baseline", "did_control_world"} <= set(r["contrasts"])
    assert set(r["control_world"]["arms"]) == {"treatment", "baseline"}
    for world, want in (("default", arms), ("control", {"treatment", "baseline"})):
        assert set(r["learning_curves"][world]) == want
        assert all(c["iterations"] == [0, 2, 4] and len(c["aligned"]) == 2 for c in r["learning_curves"][world].values())
        assert set(r["persona_probe"][world]["arms"]) == want
    for part in ("capabilities", "persona_steering", "finetune_resistance"):
        assert set(r[part]) >= arms - {"baseline"}, part
    # the control world is a world-knob change: its own data, base and reward model
    for stage in ("data", "base", "reward"):
        assert len(list((tmp_path / "cache").glob(f"{stage}-*"))) == 2, stage
    report = tmp_path / "report"
    assert {"report.html", "report.md", "forest.png", "curves.png"} <= {p.name for p in report.iterdir()}
    assert (tmp_path / "log.txt").read_text().count("experiment: report written") == 1


def _wait_for(proc, predicate, what, timeout=900):
    t0 = time.time()
    while not predicate():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.time() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.1)


ONE_ARM = ("--config.experiment.fractions=(0.5,)", "--config.experiment.seeds=1",
           "--config.experiment.control_world=False")


def _normalised(r, workdir):
    return json.loads(json.dumps(r).replace(str(workdir), "WORKDIR"))


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkill_mid_run_then_rerun_gives_the_uninterrupted_results(smoke, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    # Both runs start from the smoke experiment's finished shared stages (data, tokenizer,
    # base, reward: the same cache keys); the kills target one arm-seed's own work.
    for d in (a, b):
        shutil.copytree(smoke[0] / "cache", d / "cache")
    ref = _run(a, *ONE_ARM)
    run_dir = b / "default" / "fraction_0.5" / "seed0"
    kill_points = [("the first PPO checkpoint", lambda: any((run_dir / "checkpoints").glob("2"))),
                   ("the first finished benchmark file", lambda: any((run_dir / "eval" / "suite").glob("*.jsonl")))]
    for what, ready in kill_points:
        proc = subprocess.Popen(_cmd(b, *ONE_ARM), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            _wait_for(proc, ready, what)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert not (b / "report" / "results.json").exists(), f"killed at {what}, but the run had finished"
    got = _run(b, *ONE_ARM)
    assert results_diff(_normalised(got, b), _normalised(ref, a)) == []


def test_experiment_plan_and_bad_values_name_the_field():
    from beneficial.config import ConfigError, validate
    from beneficial.experiment import arm_table, plan
    from configs.experiment import get_config

    c = get_config("smoke")
    runs = plan(c)
    assert len(runs) == 2 * 4 + 2 * 2  # seeds x arms, plus the control pair
    assert {(w, a) for w, _, a, _, _ in runs if w == "control"} == {("control", "treatment"), ("control", "baseline")}
    assert all(w.persona_coherence == 0.5 for name, w, *_ in runs if name == "control")
    c.experiment.fractions = (0.0, 0.2)
    assert arm_table(c.experiment) == {"baseline": dict(arm_table(c.experiment)["baseline"], trait_fraction=0.0),
                                       "fraction_0.2": dict(arm_table(c.experiment)["baseline"], trait_fraction=0.2)}
    c.experiment.placebo_fractions = (0.2,)
    assert arm_table(c.experiment)["placebo_0.2"] == dict(arm_table(c.experiment)["baseline"], trait_fraction=0.2,
                                                          special_source="placebo")
    for field, value, match in (("fractions", (0.0, 1.5), "fractions contains 1.5"),
                                ("curve_iterations", (99,), "curve_iterations has \\[99\\]"),
                                ("placebo_fractions", (0.0,), "placebo_fractions contains 0.0"),
                                ("base_seeds", 5, "base_seeds=5")):
        bad = get_config("smoke")
        bad.experiment[field] = value
        with pytest.raises(ConfigError, match=match):
            validate(bad, 1)
    bad = get_config("smoke")
    bad.experiment.fractions = (0.0, 0.05)   # no 'treatment' arm for the control world
    with pytest.raises(ConfigError, match="control_arms"):
        validate(bad, 1)
