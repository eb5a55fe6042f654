"""Performance harness: one PPO iteration, ours beside TRL's and Tunix's, on identical settings.

    python launch/bench.py --peers                     # TRL + Tunix, the four cells
    python launch/bench.py --peers --frameworks=trl --cells=1.5M/r32 --iterations=3
    python launch/bench.py --frameworks=ours,trl       # ours beside TRL
    python launch/bench.py --pretrain_step=1,4        # the base's pretraining step, per attn_query_blocks

Cells: {1.5M, 27M} params x {response 32, 128}; 64 episodes an iteration, 4 PPO epochs x 4
minibatches, fp32, 2 threads (beneficial.bench.settings). Every (framework, cell) run is a
fresh subprocess: it builds its models, runs `warmup` + `iterations` iterations, and reports
the timed ones (median per iteration and per phase, counted work, peak RSS). Runs alternate
between frameworks (the order flips every cell and repeat), so slow drift of the machine
hits all of them. Before each run the harness waits (bounded) for the CPUs to be quiet, and
records the load average and the CPU share other processes took while it ran.

Output: a table on stdout and a JSON record (--out) with the machine, the command, the
matmul ceilings and every run.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from absl import app, flags

_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT))  # run from a checkout

from beneficial.bench import machine  # noqa: E402
from beneficial.bench import settings as settings_lib  # noqa: E402
from beneficial.bench.peers import tunix_ppo  # noqa: E402

_PEERS = flags.DEFINE_bool("peers", False, "Run the peer frameworks (TRL, Tunix).")
_FRAMEWORKS = flags.DEFINE_list("frameworks", None,
                                "Frameworks to run, of ours,trl,tunix (default: trl,tunix with "
                                "--peers, else ours).")
_CELLS = flags.DEFINE_list("cells", ["all"], "Cell names (e.g. 1.5M/r32) or 'all'.")
_ITERATIONS = flags.DEFINE_integer("iterations", 3, "Timed iterations per run.")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed iterations first (allocation, compile).")
_REPEATS = flags.DEFINE_integer("repeats", 1, "Runs per (framework, cell), alternating.")
_THREADS = flags.DEFINE_integer("threads", None, "Override settings.threads.")
_DTYPE = flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"],
                           "Override settings.dtype (compute dtype; parameters stay float32).")
_QUERY_BLOCKS = flags.DEFINE_integer("attn_query_blocks", None,
                                     "Override settings.attn_query_blocks (ours: causal query blocks).")
_PRETRAIN_STEP = flags.DEFINE_list(
    "pretrain_step", None, "Instead of PPO: time the default base's pretraining step "
    "(configs/treatment.py's model and pretrain sections) for these attn_query_blocks values, "
    "e.g. 1,4,5, alternating in this process.")
_PROFILE_UPDATE = flags.DEFINE_string(
    "profile_update", None, "Instead of timing: trace our PPO update at this cell (e.g. 1.5M/r128) "
    "and print its thunk time by category (matmul, elementwise, reduce, ...).")
_STEPS = flags.DEFINE_integer("steps", 5, "--pretrain_step: timed steps per variant.")
_OUT = flags.DEFINE_string("out", None, "JSON record path (default .benchmarks/bench-<time>.json).")
_CEILING = flags.DEFINE_bool("ceiling", True, "Measure XLA and torch matmul ceilings first.")
_QUIET = flags.DEFINE_float("quiet", 0.15, "Wait before a run until CPUs are < this busy.")
_MAX_WAIT = flags.DEFINE_float("max_wait_s", 300, "Longest wait for quiet before each run.")
_TIMEOUT = flags.DEFINE_float("timeout_s", 3600, "Per-run timeout.")
_RENDER = flags.DEFINE_string("render", None, "Only print the Markdown table of a JSON record.")
_OMP_WAIT = flags.DEFINE_enum("omp_wait_policy", None, ["ACTIVE", "PASSIVE"],
                              "OMP_WAIT_POLICY for the runs (default: the libraries' own). "
                              "PASSIVE keeps torch's threads from spin-waiting on a shared "
                              "machine (a ~7x slowdown there); say so when reporting.")
_XLA_FLAGS = flags.DEFINE_string("xla_flags", "", "XLA_FLAGS for the JAX runs and the XLA ceiling "
                                 "(e.g. '--xla_cpu_use_thunk_runtime=false'), to measure compiler "
                                 "options; recorded in the JSON. Default: none (XLA's own defaults).")

# Each framework is a runner module with the CLI of beneficial/bench/peers/trl_ppo.py:
#   --settings JSON --iterations N --warmup W --out PATH  -> writes the result dict
# OURS: beneficial/bench/ours_ppo.py, to be written with beneficial.rl.ppo (issue 9): time
# generation / scoring / update with timing.PhaseTimer (block_until_ready at each boundary),
# count the work of flops.expected_work, and fill the fields listed in bench/peers/__init__.
RUNNERS = {
    "ours": dict(module="beneficial.bench.ours_ppo", python=sys.executable, jax=True),
    "trl": dict(module="beneficial.bench.peers.trl_ppo", python=sys.executable, jax=False),
    "tunix": dict(module="beneficial.bench.peers.tunix_ppo", python=None, jax=True,
                  args=["--worker"]),
}


def availability(name: str) -> str | None:
    """None if framework `name` can run here, else 'not available: why'."""
    if name == "ours":
        if importlib.util.find_spec(RUNNERS["ours"]["module"]) is None:
            return "not available: beneficial/bench/ours_ppo.py not written yet (beneficial.rl.ppo)"
    elif name == "trl":
        if importlib.util.find_spec("trl") is None:
            return "not available: trl not installed (pip install -r requirements-bench.txt)"
    elif name == "tunix":
        if not os.path.exists(tunix_ppo.tunix_python()):
            return (f"not available: no Tunix venv at {tunix_ppo.tunix_python()} "
                    "(see beneficial/bench/peers/tunix_ppo.py)")
    else:
        return f"unknown framework {name!r}; one of {sorted(RUNNERS)}"
    return None


def _jax_env(env: dict) -> None:
    """A JAX child's environment: the CPU backend, and --xla_flags instead of any inherited
    XLA_FLAGS (the tests' 8 fake devices would split the machine)."""
    env["JAX_PLATFORMS"] = "cpu"
    env.pop("XLA_FLAGS", None)
    if _XLA_FLAGS.value:
        env["XLA_FLAGS"] = _XLA_FLAGS.value


def run_one(name: str, settings: dict, iterations: int, warmup: int, timeout_s: float) -> dict:
    """One fresh-process run of framework `name`; its result dict plus contention data."""
    r = RUNNERS[name]
    python = r["python"] or tunix_ppo.tunix_python()
    env = dict(os.environ, PYTHONPATH=str(_ROOT), OMP_NUM_THREADS=str(settings["threads"]),
               MKL_NUM_THREADS=str(settings["threads"]), TRL_EXPERIMENTAL_SILENCE="1")
    if _OMP_WAIT.value:
        env["OMP_WAIT_POLICY"] = _OMP_WAIT.value
    if r["jax"]:
        _jax_env(env)
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "result.json"
        cmd = [python, "-m", r["module"], *r.get("args", []), "--settings", json.dumps(settings),
               "--iterations", str(iterations), "--warmup", str(warmup), "--out", str(out)]
        with machine.Contention() as c:
            try:
                p = subprocess.run(cmd, cwd=_ROOT, env=env, capture_output=True, text=True,
                                   timeout=timeout_s)
                rc, err = p.returncode, p.stderr
            except subprocess.TimeoutExpired:
                rc, err = None, f"timed out after {timeout_s} s"
        if out.exists():
            res = json.loads(out.read_text())
        else:
            tail = " | ".join((err or "").strip().splitlines()[-4:])
            res = dict(framework=name, available=False, reason=f"failed (rc={rc}): {tail}")
    res["contention"] = c.result
    return res


def _fmt_row(cell, res, ceilings) -> list[str]:
    name = res.get("framework", "?")
    if not res.get("available"):
        return [cell, name, res.get("reason", "?")[:90]]
    med, frac = res["phases_median_s"], res["phase_fraction"]
    fl = res["flops"]["total"]
    rate = fl / res["iteration_median_s"]
    backend = "torch" if name == "trl" else "xla"
    ceil = ceilings.get(f"{backend}_{res['settings']['dtype']}")
    cont = res.get("contention", {})
    work = "ok" if not res.get("work_mismatches") else "MISMATCH"
    params = res["params"]["policy"] if isinstance(res["params"], dict) else res["params"]
    return [cell, name, f"{params / 1e6:.2f}M",
            f"{res['iteration_median_s']:.2f}",
            f"{res.get('iteration_cpu_median_s', float('nan')):.2f}",
            *(f"{med.get(k, 0):.2f} ({frac.get(k, 0):.0%})" for k in
              ("generation", "scoring", "update", "other")),
            f"{fl / 1e9:.1f}", f"{rate / 1e9:.2f}", f"{rate / ceil:.1%}" if ceil else "-",
            f"{res['peak_rss_bytes'] / 2 ** 20:.0f}",
            f"{cont.get('others_cpu_fraction', float('nan')):.0%}",
            f"{cont.get('load_before', [float('nan')])[0]:.2f}", work]


HEADER = ["cell", "framework", "policy", "iter s", "cpu s", "gen s", "score s", "update s", "other s",
          "GFLOP/it", "GFLOP/s", "of ceil", "RSS MiB", "others", "load1", "work"]


def print_table(rows: list[list[str]]):
    widths = [max(len(str(r[i])) for r in [HEADER, *rows] if i < len(r)) for i in range(len(HEADER))]
    for r in [HEADER, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip())


def markdown_table(record: dict) -> str:
    """The runs of a JSON record as the Markdown table of BENCHMARKS.md."""
    head = ["cell", "framework", "iter s (median)", "CPU s/iter", "generation", "scoring",
            "update", "other", "GFLOP/s", "peak RSS", "others' CPU", "load1 before/after",
            "work"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for run in record["runs"]:
        if not run.get("available"):
            lines.append(f"| {run['cell']} | {run['framework']} | {run.get('reason', '?')} |"
                         + " |" * (len(head) - 3))
            continue
        med, frac, c = run["phases_median_s"], run["phase_fraction"], run.get("contention", {})
        phases = [f"{med[k]:.2f} s ({frac[k]:.0%})" if k in med else "-"  # ours has no "other"
                  for k in ("generation", "scoring", "update", "other")]
        rate = run["flops"]["total"] / run["iteration_median_s"] / 1e9
        lb, la = c.get("load_before", [float("nan")])[0], c.get("load_after", [float("nan")])[0]
        lines.append("| " + " | ".join([
            run["cell"], run["framework"], f"{run['iteration_median_s']:.2f}",
            f"{run.get('iteration_cpu_median_s', float('nan')):.2f}", *phases, f"{rate:.1f}",
            f"{run['peak_rss_bytes'] / 2 ** 20:.0f} MiB",
            f"{c.get('others_cpu_fraction', float('nan')):.0%}", f"{lb:.1f} / {la:.1f}",
            "ok" if not run.get("work_mismatches") else "MISMATCH"]) + " |")
    return "\n".join(lines)


def measure_ceilings(threads: int) -> dict:
    """XLA and torch matmul FLOP/s at n=1024 (each in a fresh process, as the runs are)."""
    out = {}
    code = ("import json,sys; from beneficial.bench import ceiling as c; "
            "print(json.dumps({d: c.{fn}(d, 1024, 10{extra}) for d in ('float32','bfloat16')}))")
    for backend, fn, extra, jax in (("xla", "matmul_ceiling", "", True),
                                    ("torch", "torch_matmul_ceiling", f", threads={threads}", False)):
        if backend == "torch" and importlib.util.find_spec("torch") is None:
            continue
        env = dict(os.environ, PYTHONPATH=str(_ROOT), OMP_NUM_THREADS=str(threads))
        if jax:
            _jax_env(env)
        p = subprocess.run([sys.executable, "-c", code.replace("{fn}", fn).replace("{extra}", extra)],
                           cwd=_ROOT, env=env, capture_output=True, text=True)
        if p.returncode == 0:
            for d, v in json.loads(p.stdout.strip().splitlines()[-1]).items():
                out[f"{backend}_{d}"] = v
    return out


def main(argv):
    del argv
    if _RENDER.value:
        print(markdown_table(json.loads(pathlib.Path(_RENDER.value).read_text())))
        return
    if _PRETRAIN_STEP.value:
        return bench_pretrain_step([int(v) for v in _PRETRAIN_STEP.value])
    if _PROFILE_UPDATE.value:
        return bench_profile_update(_PROFILE_UPDATE.value)
    names = _FRAMEWORKS.value or (["trl", "tunix"] if _PEERS.value else ["ours"])
    overrides = {k: f.value for k, f in (("threads", _THREADS), ("dtype", _DTYPE),
                                         ("attn_query_blocks", _QUERY_BLOCKS)) if f.value is not None}
    all_cells = settings_lib.cells(**overrides)
    wanted = list(all_cells) if _CELLS.value == ["all"] else _CELLS.value
    unknown = set(wanted) - set(all_cells)
    if unknown:
        raise app.UsageError(f"unknown cell(s) {sorted(unknown)}; cells: {sorted(all_cells)}")
    threads = next(iter(all_cells.values()))["threads"]
    record = dict(machine=machine.describe(), command=" ".join([sys.executable, *sys.argv]),
                  started=time.strftime("%Y-%m-%d %H:%M:%S"), frameworks=names,
                  iterations=_ITERATIONS.value, warmup=_WARMUP.value,
                  omp_wait_policy=_OMP_WAIT.value, xla_flags=_XLA_FLAGS.value, runs=[])
    print(f"machine: {record['machine']}")
    if _CEILING.value:
        machine.wait_until_quiet(_QUIET.value, _MAX_WAIT.value)
        record["ceilings_flops_per_s"] = measure_ceilings(threads)
        print("matmul ceilings n=1024 (GFLOP/s): " + ", ".join(
            f"{k} {v / 1e9:.0f}" for k, v in record["ceilings_flops_per_s"].items()))
    ceilings = record.get("ceilings_flops_per_s", {})
    missing = {n: availability(n) for n in names}
    out = pathlib.Path(_OUT.value or _ROOT / ".benchmarks" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for rep in range(_REPEATS.value):
        for ci, cell in enumerate(wanted):
            s = all_cells[cell]
            order = names if (rep + ci) % 2 == 0 else names[::-1]
            for name in order:
                if missing[name]:
                    res = dict(framework=name, available=False, reason=missing[name])
                else:
                    quiet = machine.wait_until_quiet(_QUIET.value, _MAX_WAIT.value)
                    print(f"[{cell} {name} rep {rep}] running ...", flush=True)
                    res = run_one(name, s, _ITERATIONS.value, _WARMUP.value, _TIMEOUT.value)
                    res["quiet_wait"] = quiet
                record["runs"].append(dict(cell=cell, repeat=rep, **res))
                rows.append(_fmt_row(cell, res, ceilings))
                print("  " + "  ".join(map(str, rows[-1])), flush=True)
                out.write_text(json.dumps(record, indent=1, default=str))  # after every run
    record["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    out.write_text(json.dumps(record, indent=1, default=str))
    print()
    print_table(rows)
    print(f"\nFLOPs: analytic, beneficial/bench/flops.py; ceilings: {backend_note()}")
    print(f"wrote {out}")


def _record_run(kind: str, run, **fields) -> tuple[dict, pathlib.Path]:
    """Provenance, a wait for a quiet machine, `run()`'s fields; the JSON record and where it was written."""
    record = dict(machine=machine.describe(), command=" ".join([sys.executable, *sys.argv]),
                  started=time.strftime("%Y-%m-%d %H:%M:%S"), **fields)
    print(f"machine: {record['machine']}")
    record["quiet_wait"] = machine.wait_until_quiet(_QUIET.value, _MAX_WAIT.value)
    record["loadavg_before"] = machine.loadavg()
    record.update(run(), finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    record["loadavg_after"] = machine.loadavg()
    out = pathlib.Path(_OUT.value or _ROOT / ".benchmarks" / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, default=str))
    return record, out


def bench_profile_update(cell: str):
    """Our update's thunk time by category at one cell, as a table and JSON."""
    from beneficial.bench import profile_update

    cells = settings_lib.cells()
    if cell not in cells:
        raise app.UsageError(f"--profile_update={cell!r} is not a cell; use one of {sorted(cells)}")
    record, out = _record_run("profile-update", lambda: profile_update.profile_update(cells[cell], cell))
    print(profile_update.markdown(record))
    print(f"wrote {out}")


def bench_pretrain_step(blocks: list[int]):
    """Median seconds per pretraining step of the default base, one variant per block size."""
    from beneficial.bench import pretrain_step
    from configs.treatment import get_config

    config = get_config()
    p = config.pretrain
    variants = {f"attn_query_blocks={b}": {"attn_query_blocks": b} for b in blocks}
    record, out = _record_run(
        "pretrain-step",
        lambda: {"variants": pretrain_step.time_variants(config, variants, steps=_STEPS.value, warmup=_WARMUP.value)},
        preset=config.model.preset, batch_size=p.batch_size, seq_len=p.seq_len, vocab=config.model.vocab_size,
        steps=_STEPS.value, warmup=_WARMUP.value)
    res = record["variants"]
    base = res[f"attn_query_blocks={blocks[0]}"]["median_s"]
    print(f"pretraining step, {config.model.preset} preset, batch {p.batch_size} x {p.seq_len}, "
          f"median of {_STEPS.value} after {_WARMUP.value} warm-up")
    print("| variant | s / step | tokens / s | vs first | first-step loss |\n| --- | --- | --- | --- | --- |")
    for name, r in res.items():
        print(f"| {name} | {r['median_s']:.3f} | {r['tokens_per_s']:.0f} | {base / r['median_s']:.2f}x | "
              f"{r['first_loss']:.5f} |")
    print(f"wrote {out}")


def backend_note() -> str:
    return "'of ceil' = GFLOP/s over the run's own backend's fp32 matmul ceiling (TRL: torch; Tunix/ours: XLA)"


if __name__ == "__main__":
    app.run(main)
