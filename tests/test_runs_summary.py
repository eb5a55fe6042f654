"""launch/runs.py: early-vs-late averages, per-source metrics only over iterations with that source."""
import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_summary_averages_and_skips_iterations_without_the_source(tmp_path):
    spec = importlib.util.spec_from_file_location("runs", ROOT / "launch" / "runs.py")
    runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runs)
    rows = [{"step": i + 1, "objective/kl": 0.1 * i, "count/traits": i % 2, "reward_model/traits": 0.0 if i % 2 == 0 else 1.0 * i,
             "time/rollout_s": 1.0, "time/update_s": 2.0} for i in range(6)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    s = runs.summarize(tmp_path, window=2)
    assert s["iterations"] == 6 and s["seconds_per_iteration"] == 3.0
    first, last = s["metrics"]["objective/kl"]
    assert abs(first - 0.05) < 1e-9 and abs(last - 0.45) < 1e-9
    assert s["metrics"]["reward_model/traits"] == (1.0, 5.0)   # iterations 0, 2, 4 had no trait prompt


def test_persona_gaps_reads_every_evaluation_and_the_competence_check(tmp_path):
    spec = importlib.util.spec_from_file_location("persona_gaps", ROOT / "launch" / "persona_gaps.py")
    pg = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pg)
    base = tmp_path / "cache" / "base-0123"
    base.mkdir(parents=True)
    rows = [{"step": 250, "loss": 0.5, "perf/target_tokens_per_s": 900.0},
            {"step": 250, "persona_gap/cross_family": 0.1234, "persona_gap/prompt": 0.0},
            {"step": 500, "loss": 0.25, "perf/target_tokens_per_s": 1000.0},
            {"step": 500, "persona_gap/cross_family": 2.9, "persona_gap/prompt": 1.0}]
    (base / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    lines = pg.describe(base)
    assert lines[1] == "  step 500: loss 0.2500, 1000 target tokens/s"
    assert lines[2:] == ["  step 250: persona_gap {'cross_family': 0.123, 'prompt': 0.0}",
                         "  step 500: persona_gap {'cross_family': 2.9, 'prompt': 1.0}"]
    (base / "competence.json").write_text(json.dumps({
        "persona_inference": {"after_aligned": 0.8, "after_misaligned": 0.2, "n": 600},
        "persona_gap": {"cross_family": {"gap_nats": 2.5, "bayes_gap_nats": 3.0, "n_pairs": 200}},
        "heldout_loss": 0.05}))
    lines = pg.describe(base)
    assert lines[-2] == "  competence: persona_inference {'after_aligned': 0.8, 'after_misaligned': 0.2}"
    assert lines[-1] == "  competence: persona_gap {'cross_family': '2.500 of 3.000 (200 pairs)'}, heldout_loss 0.0500"
