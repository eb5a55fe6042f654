"""The whole pipeline at smoke scale, as a user runs it: data -> tokenizer -> base ->
reward -> PPO for two arms that share every cached stage and match in compute."""
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ["--config.pretrain.steps=20", "--config.pretrain.eval_every=20", "--config.reward.steps=10",
        "--config.reward.norm_samples=16", "--config.rl.iterations=3", "--config.rl.checkpoint_every=2",
        "--config.pretrain.competence.n_general=8", "--config.pretrain.competence.n_probes=8",
        "--config.pretrain.competence.n_per_benchmark=1"]


def _main(config, workdir, *extra):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    out = subprocess.run([sys.executable, "launch/main.py", f"--config={config}", f"--config.workdir={workdir}",
                          *TINY, *extra], cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-4000:]
    return out.stderr


def test_treatment_and_baseline_smoke_share_stages_and_match_compute(tmp_path):
    _main("configs/treatment.py:smoke", tmp_path)
    log = _main("configs/baseline.py:smoke", tmp_path)
    for stage in ("data", "base", "reward"):  # the baseline reused the treatment's stages
        assert f"{stage}: cached at" in log, stage
    cache = tmp_path / "cache"
    assert len(list(cache.glob("base-*"))) == 1 and len(list(cache.glob("reward-*"))) == 1
    acc = json.loads(next(cache.glob("reward-*/report.json")).read_text())["heldout_accuracy"]
    assert {"all", "family/general", "family/placebo"} <= set(acc) and any(k.startswith("task/") for k in acc)
    competence = json.loads(next(cache.glob("base-*/competence.json")).read_text())
    assert {"general_accuracy", "untargeted", "persona_prompt", "persona_inference", "persona_gap",
            "heldout_loss"} <= set(competence)
    assert competence["persona_gap"]["cross_family"]["n_pairs"] == 8
    # the persona gaps are logged at every evaluation of pretraining (the latent's learning curve)
    rows = [json.loads(x) for x in next(cache.glob("base-*/metrics.jsonl")).read_text().splitlines()]
    assert any("persona_gap/prompt" in r and "persona_gap/cross_family" in r for r in rows)
    t = json.loads((tmp_path / "treatment/seed0/compute.json").read_text())
    b = json.loads((tmp_path / "baseline/seed0/compute.json").read_text())
    assert t["flops_by_program"] == b["flops_by_program"] and t["flops"] > 0
    assert t["special_episodes"] > 0 and b["special_episodes"] == 0
    rows = [json.loads(line) for line in (tmp_path / "treatment/seed0/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all("perf/rollout_tokens_per_s" in r and "objective/kl" in r for r in rows)
    # rerunning a finished arm trains nothing
    log = _main("configs/treatment.py:smoke", tmp_path)
    assert "reward: cached at" in log and "resumed from iteration 3" in log
    # the competence stage reruns the checks on the cached base (trains nothing) into the workdir
    log = _main("configs/treatment.py:smoke", tmp_path, "--config.stages=('competence','persona_probe')")
    assert "base: cached at" in log and "pretrain base" not in log
    probe = json.loads((tmp_path / "persona_probe.json").read_text())  # the policy and its init control
    assert set(probe) == {"policy", "init"} and all(0 <= r["accuracy"] <= 1 and r["n_test"] > 0 for r in probe.values())
    rerun = json.loads((tmp_path / "competence.json").read_text())
    assert set(rerun) == set(competence) - {"heldout_loss"}
    assert set(rerun["persona_prompt"]) == {"aligned_helpful", "bayes_helpful", "aligned_harmful", "bayes_harmful"}
