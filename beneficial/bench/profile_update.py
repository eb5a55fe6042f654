"""Where the PPO update's time goes: a jax.profiler trace of our update at one bench cell,
each XLA thunk's time grouped by what its fusion computes (launch/bench.py --profile_update).

XLA:CPU traces one event per executed thunk (a fusion, a library matmul, a copy). The compiled
HLO names what each fusion holds, so its time is attributed to: matmul (holds a dot),
exp/log (transcendentals: softmax, log-softmax), reduce, copy/transpose, gather/slice, control,
elementwise. Two thunks can run at once on two threads, so the summed thunk time can exceed
the wall time; the shares are of the summed time.
"""
from __future__ import annotations

import collections
import glob
import gzip
import json
import re
import tempfile
import time

import jax

from beneficial.bench import settings as settings_lib
from beneficial.bench.ours_ppo import rollout_batch, setup_ours_ppo

# Trace events that are not thunks (host-side dispatch, the executor's own spans).
_NOT_THUNKS = ("ThunkExecutor", "Pjit", "Execute", "$", "Slinky", "Allocate", "Handle", "Parse", "Python",
               "CommonPjRt", "Wait for")


def hlo_ops(hlo_text: str) -> dict[str, tuple[str, set[str]]]:
    """Instruction name -> (result shape, opcodes it computes, its fused computation's included)."""
    bodies, current = {}, None
    for line in hlo_text.splitlines():
        if not line.startswith(" "):
            m = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line.strip())
            current = m.group(1) if m else None
            if current:
                bodies[current] = []
        elif current:
            bodies[current].append(line.strip())
    out = {}
    for lines in bodies.values():
        for line in lines:
            m = re.match(r"^(?:ROOT )?%?([\w.\-]+) = (.+?) ([\w\-]+)\(", line)  # shapes may be tuples
            if not m:
                continue
            ops = {m.group(3)}
            called = re.search(r"calls=%?([\w.\-]+)", line)
            for inner in bodies.get(called.group(1), []) if called else []:
                mm = re.match(r"^(?:ROOT )?%?[\w.\-]+ = .+? ([\w\-]+)\(", inner)
                if mm:
                    ops.add(mm.group(1))
            out[m.group(1)] = (m.group(2).split("{")[0], ops)
    return out


def category(ops: set[str]) -> str:
    if ops & {"dot", "convolution", "custom-call"}:
        return "matmul"
    if ops & {"exponential", "log", "tanh", "logistic", "cosine", "sine"}:
        return "exp/log"
    if "reduce" in ops:
        return "reduce"
    if ops & {"while", "conditional", "call"}:
        return "control"
    if ops & {"gather", "scatter", "dynamic-slice", "dynamic-update-slice"}:
        return "gather/slice"
    if ops <= {"copy", "transpose", "bitcast", "fusion", "parameter"}:
        return "copy/transpose"
    return "elementwise"


def thunk_times(trace_dir: str, calls: int) -> dict[str, float]:
    """Thunk name -> seconds per call of the traced function."""
    path = sorted(glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True))[-1]
    with gzip.open(path) as f:
        events = json.load(f)["traceEvents"]
    dur = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and not e["name"].startswith(_NOT_THUNKS):
            dur[e["name"].removeprefix("end: ")] += e.get("dur", 0) * 1e-6 / calls  # "end: x": x's completion
    return dict(dur)


def profile_update(settings: dict, cell: str, calls: int = 2) -> dict:
    """Trace `calls` update steps on bench `settings` (named `cell`); seconds per update by
    category and by result shape."""
    s = settings_lib.make_settings(**settings)
    ppo, state, frozen, prompts, _, _ = setup_ours_ppo(s, iterations=1)
    key = jax.random.key(s["seed"])
    _, batch = rollout_batch(ppo, state, prompts, key)
    rb, _ = jax.block_until_ready(ppo.rollout.score_step(state, frozen, batch))
    ops = hlo_ops(ppo.update.lower(state, rb, key).compile().as_text())
    state, _ = jax.block_until_ready(ppo.update(state, rb, key))  # compile outside the trace
    t0 = time.perf_counter()
    state, _ = jax.block_until_ready(ppo.update(state, rb, key))
    untraced = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            for _ in range(calls):
                state, _ = jax.block_until_ready(ppo.update(state, rb, key))
        dur = thunk_times(trace_dir, calls)
    by_cat, by_shape = collections.Counter(), collections.Counter()
    for name, d in dur.items():
        shape, o = ops.get(name, ("?", None))
        cat = "unmapped" if o is None else category(o)  # a thunk the HLO text does not name
        by_cat[cat] += d
        by_shape[(cat, shape)] += d
    return dict(cell=cell, settings=s, update_s_untraced=untraced, thunk_s=sum(dur.values()), thunks=len(dur),
                categories=dict(by_cat.most_common()),
                top_shapes=[dict(category=c, shape=sh, s=d) for (c, sh), d in by_shape.most_common(15)])


def markdown(r: dict) -> str:
    total = r["thunk_s"]
    lines = [f"update at {r['cell']}: {r['update_s_untraced']:.2f} s untraced; {total:.2f} s summed over "
             f"{r['thunks']} thunks", "", "| category | s | share |", "| --- | --- | --- |"]
    lines += [f"| {c} | {d:.3f} | {100 * d / total:.1f}% |" for c, d in r["categories"].items()]
    lines += ["", "| category | result shape | s |", "| --- | --- | --- |"]
    lines += [f"| {t['category']} | {t['shape']} | {t['s']:.3f} |" for t in r["top_shapes"]]
    return "\n".join(lines)
