"""Summarise PPO runs from their metrics.jsonl: early vs late averages of what PPO.md
says to watch (rewards per source, the world grader on trait rollouts, KL, entropy,
unclear text), throughput, and the run's compute.json.

    python launch/runs.py workdir/experiment/default/*/seed0
    python launch/runs.py workdir/default/treatment/seed0 --window=10
"""
import json
import math
import pathlib
import sys

from absl import app, flags

_WINDOW = flags.DEFINE_integer("window", 10, "iterations averaged at the start and at the end")

WATCH = [  # (metric, what it is)
    ("grader/general", "general-task accuracy of rollouts (exact grader)"),
    ("reward_model/traits", "reward-model score, trait prompts"),
    ("grader/traits_aligned", "world grader: trait rollouts aligned"),
    ("grader/traits_unclear", "world grader: trait rollouts unclear"),
    ("reward_model/placebo", "reward-model score, placebo prompts"),
    ("objective/scores", "standardised score (all sources)"),
    ("objective/kl", "KL(policy || reference), per sequence"),
    ("policy/entropy_avg", "policy entropy per token"),
    ("val/response_length", "response length (tokens)"),
    ("perf/rollout_tokens_per_s", "rollout tokens/s"),
    ("perf/update_tokens_per_s", "update tokens/s"),
]


def _mean(rows, key):
    """Mean over iterations; a per-source metric only over iterations that had that source."""
    source = key.split("/")[-1].split("_")[0]
    rows = [r for r in rows if r.get(f"count/{source}", 1) > 0]
    vals = [r[key] for r in rows if key in r and r[key] is not None and math.isfinite(r[key])]
    return sum(vals) / len(vals) if vals else float("nan")


def summarize(run_dir: pathlib.Path, window: int) -> dict:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "objective/kl" in r]
    first, last = rows[:window], rows[-window:]
    out = {"run": str(run_dir), "iterations": len(rows),
           "metrics": {k: (_mean(first, k), _mean(last, k)) for k, _ in WATCH},
           "seconds_per_iteration": _mean(rows, "time/rollout_s") + _mean(rows, "time/update_s")}
    if (run_dir / "compute.json").exists():
        c = json.loads((run_dir / "compute.json").read_text())
        out["compute"] = {k: c.get(k) for k in ("flops", "tokens", "special_episodes", "special_source")}
    return out


def main(argv):
    dirs = [pathlib.Path(a) for a in argv[1:]]
    if not dirs:
        sys.exit("usage: python launch/runs.py RUN_DIR [RUN_DIR ...]")
    w = _WINDOW.value
    for d in dirs:
        if not (d / "metrics.jsonl").exists():
            sys.exit(f"{d}: no metrics.jsonl (not a PPO run directory)")
        s = summarize(d, w)
        print(f"\n{s['run']}: {s['iterations']} iterations, {s['seconds_per_iteration']:.1f} s/iteration, "
              f"compute {json.dumps(s.get('compute'))}")
        print(f"  {'metric':<28} {'first ' + str(w):>10} {'last ' + str(w):>10}")
        for k, desc in WATCH:
            a, b = s["metrics"][k]
            if not (math.isnan(a) and math.isnan(b)):
                print(f"  {k:<28} {a:>10.3f} {b:>10.3f}   {desc}")


if __name__ == "__main__":
    app.run(main)
