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
