"""The `experiment` stage: every arm over seeds, the control world, learning curves, a
linear probe of the persona latent, and the comparison report (configs/experiment.py).

Work units, in order, each cached or resumable so that the command can be killed at any
moment and rerun to continue:

    per world (default; control at persona_coherence 0.5) and base seed:
        data, tokenizer, base, reward          cached stages (cache/<stage>-<hash>)
        curve point 0, persona probe           <workdir>/<world>/base<b>/
    per world, arm, RL seed:
        ppo (+ curve points on the way)        <workdir>/<world>/<arm>/seed<k>/ (Orbax)
        eval (suite, capabilities, steering,   .../seed<k>/eval/  (per-benchmark JSONL)
              fine-tuning), probe projection
    report                                     <workdir>/report/ (written atomically)

A finished unit is never redone: the PPO loop resumes from its last checkpoint (a finished
run only restores), every benchmark file is complete or absent (atomic writes), and
evaluation samples with one key per request, so a resumed run reproduces an uninterrupted
one exactly.
"""
from __future__ import annotations

import copy
import json
import logging
import pathlib
import time

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from beneficial import compute, stages
from beneficial.stages import stage

log = logging.getLogger("beneficial")

ARM_FIELDS = ("trait_fraction", "special_source", "traits", "trait_domains")


# ----------------------------------------------------------------------------- the plan
def arm_table(exp) -> dict:
    """{arm: its rl overrides}: the configured arms, or the fraction sweep when set
    (with its placebo twins 'placebo_<f>': the same slots filled with placebo prompts)."""
    if len(exp.fractions):
        base = exp.arms.treatment.to_dict() if "treatment" in exp.arms else {}
        out = {}
        for f in exp.fractions:
            name = "baseline" if float(f) == 0.0 else f"fraction_{float(f):g}"
            out[name] = dict(base, trait_fraction=float(f), special_source="traits")
        for f in exp.placebo_fractions:
            out[f"placebo_{float(f):g}"] = dict(base, trait_fraction=float(f), special_source="placebo")
        return out
    return {name: exp.arms[name].to_dict() for name in exp.arms}


def worlds(config) -> list[tuple[str, ml_collections.ConfigDict]]:
    out = [("default", config.world)]
    if config.experiment.control_world:
        w = copy.deepcopy(config.world)
        with w.unlocked():
            w.persona_coherence = float(config.experiment.control_coherence)
        out.append(("control", w))
    return out


def arm_config(config, world, arm: str, overrides: dict, seed: int):
    """The full config of one run: the experiment's config with this arm's rl fields."""
    c = copy.deepcopy(config)
    with c.unlocked():
        c.world = copy.deepcopy(world)
        c.arm = arm
        c.seed = int(seed)
        base_seed = int(seed) % int(config.experiment.base_seeds)
        c.pretrain.seed = int(config.pretrain.seed) + base_seed
        c.reward.seed = int(config.reward.seed) + base_seed
        for k, v in overrides.items():
            c.rl[k] = list(v) if isinstance(v, (list, tuple)) else v
    return c


def validate_experiment(config) -> None:
    exp = config.experiment
    for f in exp.fractions:
        if not 0.0 <= float(f) <= 1.0:
            raise ValueError(f"config.experiment.fractions contains {f}; fractions must lie in [0, 1]")
    for f in exp.placebo_fractions:
        if not 0.0 < float(f) <= 1.0 or not len(exp.fractions):
            raise ValueError(f"config.experiment.placebo_fractions contains {f}; placebo fractions must lie in (0, 1] "
                             f"and go with a fraction sweep (set config.experiment.fractions, e.g. '(0,{f})')")
    arms = arm_table(exp)
    if not arms:
        raise ValueError("config.experiment.arms is empty; name at least one arm (e.g. 'baseline')")
    for name, o in arms.items():
        unknown = set(o) - set(ARM_FIELDS)
        if unknown:
            raise ValueError(f"config.experiment.arms.{name} sets {sorted(unknown)}; an arm may set only {ARM_FIELDS}")
        if not 0.0 <= float(o.get("trait_fraction", 0.0)) <= 1.0:
            raise ValueError(f"config.experiment.arms.{name}.trait_fraction={o['trait_fraction']}; use a value in [0, 1]")
    if int(exp.seeds) < 1 or int(exp.base_seeds) < 1 or int(exp.base_seeds) > int(exp.seeds):
        raise ValueError(f"config.experiment.seeds={exp.seeds}, base_seeds={exp.base_seeds}: "
                         f"need 1 <= base_seeds <= seeds")
    missing = [a for a in exp.control_arms if a not in arms]
    if exp.control_world and missing:
        raise ValueError(f"config.experiment.control_arms={list(exp.control_arms)} names {missing}, which are not "
                         f"arms of this experiment ({list(arms)}); set control_arms or control_world=False")
    if not 0.0 <= float(exp.control_coherence) <= 1.0:
        raise ValueError(f"config.experiment.control_coherence={exp.control_coherence}; use a value in [0, 1]")
    bad = [p for p in exp.curve_iterations if not 0 < int(p) <= int(config.rl.iterations)]
    if bad:
        raise ValueError(f"config.experiment.curve_iterations has {bad} outside (0, rl.iterations="
                         f"{config.rl.iterations}]")


def plan(config) -> list[tuple[str, ml_collections.ConfigDict, str, dict, int]]:
    """(world name, world, arm, rl overrides, seed) of every RL run, in run order."""
    exp = config.experiment
    arms = arm_table(exp)
    runs = []
    for wname, world in worlds(config):
        names = list(arms) if wname == "default" else [a for a in exp.control_arms if a in arms]
        for seed in range(int(exp.seeds)):
            for arm in names:
                runs.append((wname, world, arm, arms[arm], seed))
    return runs


# ----------------------------------------------------------------------------- helpers
def _world_ctx(ctx, world_config):
    return stages.Context(config=world_config, mesh=ctx.mesh, workdir=ctx.workdir)


def _shared_stages(wctx):
    """data, tokenizer, base and reward of this world and base seed (cached)."""
    for name in ("data", "tokenizer", "base", "reward"):
        stages.run(name, wctx)


def _curve_benchmarks(suite, exp):
    return [b for b in suite if not b.targeted and (not len(exp.curve_formats) or b.format in exp.curve_formats)]


def curve_point(wctx, params, out_dir, seed_index: int) -> float:
    """Untargeted aligned rate on the curve subsample (per-benchmark files: resumable)."""
    from beneficial.evals.runner import evaluate_policy
    from beneficial.evals.stage import _prepare

    c, e, mesh, rules, _, tok, suite = _prepare(wctx)
    exp = c.experiment
    res = evaluate_policy(wctx.artifacts["base"][0], params, tok, _curve_benchmarks(suite, exp), e, out_dir,
                          seed=int(e.seed) + seed_index, n_per_benchmark=int(exp.curve_n_per_benchmark),
                          desc="curve", mesh=mesh, rules=rules)
    return float(np.mean([r["aligned"].mean() for r in res.values()]))


def _write_json(path: pathlib.Path, obj) -> None:
    if jax.process_index() == 0:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(obj, indent=1))
        tmp.replace(path)


def _cached_json(path: pathlib.Path, fn):
    if path.exists():
        return json.loads(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    out = fn()
    _write_json(path, out)
    return out


# ----------------------------------------------------------------------------- the run
def run_experiment(ctx) -> dict | None:
    from beneficial.evals.stage import _prepare, collect_inputs, evaluate_one, write_eval_report
    from beneficial.probe import fit_persona_probe, probe_projection
    from beneficial.rl.stage import run_ppo
    from beneficial.train.reward import reward_key

    t0 = time.perf_counter()
    config = ctx.config
    exp = config.experiment
    validate_experiment(config)
    runs = plan(config)
    arms = arm_table(exp)
    base_seeds = int(exp.base_seeds)
    world_list = worlds(config)
    n_units = len(world_list) * base_seeds + 2 * len(runs) + 1
    log.info("experiment: %d RL runs (%s x %d seeds%s), %d base seed(s)", len(runs), list(arms), int(exp.seeds),
             " + control world" if exp.control_world else "", base_seeds)

    shared: dict = {}       # (world, base seed) -> world context with data, tokenizer, base, reward
    per_arm: dict = {}      # world -> arm -> [evaluate_one output per seed]
    arm_info: dict = {}     # world -> arm -> seeds, checkpoints, compute
    curves: dict = {}       # world -> arm -> {"iterations": [...], "aligned": [[per seed]]}
    probe: dict = {}        # world -> {"base": ..., arm: [projection per seed]}
    with tqdm(total=n_units, desc="experiment", position=0, dynamic_ncols=True,
              disable=jax.process_index() != 0) as bar:
        def unit(text):
            bar.set_postfix_str(text, refresh=True)
            log.info("experiment: %s", text)

        def shared_for(wname, world, seed):
            b = seed % base_seeds
            if (wname, b) not in shared:
                unit(f"{wname} world, base seed {b}: data, tokenizer, base, reward")
                wctx = _world_ctx(ctx, arm_config(config, world, "base", {}, b))
                _shared_stages(wctx)
                _prepare(wctx)   # the benchmark suite, built once per world
                bdir = pathlib.Path(ctx.workdir) / wname / f"base{b}"
                graphdef, params = wctx.artifacts["base"]
                base_curve = (curve_point(wctx, params, bdir / "curve" / "iter0", 0)
                              if len(exp.curve_iterations) else None)
                pr = None
                if exp.probe:
                    pr = _cached_json(bdir / "probe.json", lambda: fit_persona_probe(
                        graphdef, params, wctx.artifacts["tokenizer"], wctx.artifacts["data_dir"], exp.probe_config,
                        bdir / "probe.npz"))
                    pr["base_projection"] = _cached_json(bdir / "probe_projection.json", lambda: probe_projection(
                        graphdef, params, wctx.artifacts["tokenizer"], wctx.artifacts["data_dir"], exp.probe_config,
                        bdir / "probe.npz"))
                shared[(wname, b)] = (wctx, base_curve, pr)
                bar.update(1)
            return shared[(wname, b)]

        for wname, world, arm, overrides, seed in runs:
            wctx, base_curve, base_probe = shared_for(wname, world, seed)
            rctx = stages.Context(config=arm_config(config, world, arm, overrides, seed), mesh=ctx.mesh,
                                  workdir=ctx.workdir, artifacts=dict(wctx.artifacts))
            run_dir = pathlib.Path(ctx.workdir) / wname / arm / f"seed{seed}"
            # --- PPO, with curve points evaluated before the checkpoint of their iteration
            unit(f"{wname}/{arm}/seed{seed}: ppo")
            points = {int(p) for p in exp.curve_iterations}
            curve = {}

            def on_iteration(done, state, _run_dir=run_dir, _seed=seed, _rctx=rctx):
                if done in points:
                    path = _run_dir / "curve" / f"iter{done}.json"
                    curve[done] = _cached_json(path, lambda: {"aligned": curve_point(
                        _rctx, state["policy"], _run_dir / "curve" / f"iter{done}", _seed)})["aligned"]

            rctx.artifacts["reward_key"] = reward_key(rctx.config, rctx.artifacts["base_key"])
            graphdef, policy, _ = run_ppo(rctx.config, ctx.mesh, rctx.artifacts, pathlib.Path(ctx.workdir),
                                          run_dir=run_dir, on_iteration=on_iteration)
            for p in sorted(points):  # points passed before a resume: read from disk
                if p not in curve:
                    path = run_dir / "curve" / f"iter{p}.json"
                    if not path.exists():
                        raise FileNotFoundError(
                            f"{path}: no learning-curve point at iteration {p} for a run that is past it; "
                            f"config.experiment.curve_iterations changed after the run started. Restore it or "
                            f"move {run_dir} aside to rerun that arm")
                    curve[p] = json.loads(path.read_text())["aligned"]
            bar.update(1)
            # --- evaluation of the final policy
            unit(f"{wname}/{arm}/seed{seed}: eval")
            out = evaluate_one(rctx, graphdef, policy, run_dir / "eval", seed_index=seed,
                               desc=f"eval {wname}/{arm}/seed{seed}")
            per_arm.setdefault(wname, {}).setdefault(arm, []).append(out)
            comp = json.loads((run_dir / "compute.json").read_text())
            info = arm_info.setdefault(wname, {}).setdefault(arm, {
                "seeds": [], "checkpoints": [], "rl": {k: overrides.get(k) for k in ARM_FIELDS},
                "compute": {"flops": 0.0, "tokens": 0, "decode_steps": 0, "special_episodes": 0,
                            "flops_by_program": comp["flops_by_program"]}})
            info["seeds"].append(seed)
            info["checkpoints"].append(str(run_dir / "checkpoints"))
            if info["compute"]["flops_by_program"] != comp["flops_by_program"]:
                raise compute.ComputeMismatch(f"{wname}/{arm}: seeds differ in padded FLOPs")
            for k in ("flops", "tokens", "decode_steps", "special_episodes"):  # totals over seeds
                info["compute"][k] += comp[k]
            if len(points):
                c_arm = curves.setdefault(wname, {}).setdefault(arm, {"iterations": [0] + sorted(points), "aligned": []})
                c_arm["aligned"].append([base_curve] + [curve[p] for p in sorted(points)])
            if exp.probe:
                pw = probe.setdefault(wname, {"accuracy": base_probe["accuracy"],
                                              "base": base_probe["base_projection"], "arms": {}})
                proj = _cached_json(run_dir / "probe_projection.json", lambda: probe_projection(
                    graphdef, policy, rctx.artifacts["tokenizer"], rctx.artifacts["data_dir"], exp.probe_config,
                    pathlib.Path(ctx.workdir) / wname / f"base{seed % base_seeds}" / "probe.npz"))
                pw["arms"].setdefault(arm, []).append(proj)
            bar.update(1)

        # --- compute gate: every arm of every world ran the same programs the same number of times
        compute.assert_matched({f"{w}/{a}": i["compute"] for w, arms_w in arm_info.items() for a, i in arms_w.items()})
        # --- the report
        unit("report")
        suite_ctx = shared[("default", 0)][0]
        control = None
        if "control" in per_arm:
            cctx = shared[("control", 0)][0]
            cin = collect_inputs(cctx.artifacts["eval_suite"][1], per_arm["control"], arm_info["control"])
            control = {"per_instance": cin["per_instance"], "arms": cin["arms"]}
        extra = {"learning_curves": curves, "persona_probe": probe,
                 "control_world": {"persona_coherence": float(exp.control_coherence),
                                   "arms": arm_info.get("control", {})} if control else None}
        results = write_eval_report(suite_ctx, per_arm["default"], pathlib.Path(ctx.workdir),
                                    arm_info=arm_info["default"], t0=t0, control=control, extra=extra)
        log.info("experiment: report written to %s", pathlib.Path(ctx.workdir) / "report")
        bar.update(1)
    ctx.artifacts["experiment_results"] = results
    return results


@stage("experiment")
def experiment(ctx):
    return run_experiment(ctx)
