"""The persona latent's onset in base runs: `persona_gap/*` at every evaluation, the step and
throughput reached, and the competence check if the run finished (docs/persona_latent.md).

    python launch/persona_gaps.py workdir/default                 # one workdir
    python launch/persona_gaps.py /tmp/sweep/*                    # every run of a sweep

A workdir's base runs are its `cache/base-*` folders (finished or `.partial`).
"""
import json
import pathlib
import sys

from absl import app


def _rows(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def describe(base: pathlib.Path) -> list[str]:
    rows = _rows(base / "metrics.jsonl") if (base / "metrics.jsonl").exists() else []
    train = [r for r in rows if "loss" in r]
    out = [f"{base}"]
    if train:
        last = train[-1]
        out.append(f"  step {last['step']}: loss {last['loss']:.4f}, "
                   f"{last.get('perf/target_tokens_per_s', float('nan')):.0f} target tokens/s")
    for r in rows:
        gaps = {k.split("/", 1)[1]: round(v, 3) for k, v in r.items() if k.startswith("persona_gap/")}
        if gaps:
            out.append(f"  step {r['step']}: persona_gap {gaps}")
    comp = base / "competence.json"
    if comp.exists():
        c = json.loads(comp.read_text())
        pi = {k: round(v, 3) for k, v in c["persona_inference"].items() if isinstance(v, float)}
        out.append(f"  competence: persona_inference {pi}")
        gaps = {k: f"{g['gap_nats']:.3f} of {g['bayes_gap_nats']:.3f} ({g['n_pairs']} pairs)"
                for k, g in c["persona_gap"].items()}
        out.append(f"  competence: persona_gap {gaps}, heldout_loss {c.get('heldout_loss', float('nan')):.4f}")
    return out


def main(argv):
    if len(argv) < 2:
        raise app.UsageError("give one or more workdirs (folders holding cache/base-*)")
    for wd in argv[1:]:
        bases = sorted(pathlib.Path(wd).glob("cache/base-*"))
        if not bases:
            print(f"{wd}: no cache/base-* folder (has the base stage started?)", file=sys.stderr)
        for b in bases:
            print("\n".join(describe(b)))


if __name__ == "__main__":
    app.run(main)
