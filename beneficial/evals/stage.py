"""The `eval` stage: one or more policies on the benchmark suite, persona steering and
fine-tuning resistance, then results.json and the report (design/EVALS.md).

    python launch/main.py --config=configs/eval.py --config.checkpoint=PATH
    python launch/main.py --config=configs/eval.py --config.checkpoint=PATH --config.compare_checkpoint=PATH2

`run_eval(ctx, policies, out_dir)` is the library entry point: `policies` maps an arm
name to (graphdef, params), or to a list of them (one per RL seed). Every part is
switchable by config (eval.suite, eval.capabilities, eval.steering.enabled,
eval.finetune.enabled, eval.report) and resumable (per-benchmark JSONL files, the
fine-tuning trainer's checkpoints). Layout:

    out_dir/<arm>/seed<k>/suite/<benchmark>.jsonl        every instance: prompt, response, grade
    out_dir/<arm>/seed<k>/capabilities/*.jsonl
    out_dir/<arm>/seed<k>/steering/{none,harmful,helpful}/*.jsonl
    out_dir/<arm>/seed<k>/finetune/...                    (see finetune.py)
    out_dir/report/{results.json,report.md,report.html,*.png}
"""
from __future__ import annotations

import datetime
import json
import logging
import pathlib
import subprocess
import time
from typing import Any, Mapping, Sequence

import ml_collections
import numpy as np

from beneficial.stages import stage
from beneficial.train.optim import optimizer_config

log = logging.getLogger("beneficial")


# ------------------------------------------------------------------------------- config
def eval_config(smoke: bool = False) -> ml_collections.ConfigDict:
    """The `eval` config section: every knob of the evaluation."""
    e = ml_collections.ConfigDict()
    e.seed = 0                     # instance subsample (paired across arms) and sampling seed
    e.out_dir = ""                 # "" = <workdir>/eval
    e.baseline = "baseline"        # the arm others are compared with (else the first arm)
    # Parts (each switchable). Sequences are tuples so the command line can set them.
    e.suite = True
    e.capabilities = True
    e.report = True
    # The suite: world eval splits + real benchmark files in external_dir (Anthropic MWE,
    # TruthfulQA mc1, chat JSONL with a grader spec), filtered by name globs.
    e.external_dir = ""
    e.benchmarks = ()              # name globs to include; [] = every benchmark
    e.exclude = ()                 # name globs to leave out
    e.n_per_benchmark = 24 if smoke else 400   # instances per benchmark (0 = all); 400 ~ 10 pt MDE
    e.n_general = 24 if smoke else 400         # general tasks for general-task accuracy
    e.n_benign = 24 if smoke else 400          # benign twins for the over-refusal rate
    # Generation (chat, multi_turn, agentic) and grading.
    e.temperature = 1.0
    e.greedy = False
    e.top_k = 0
    e.top_p = 1.0
    e.samples_per_instance = 1     # > 1: aligned/unclear are fractions of the samples
    e.max_new_tokens = 96          # the world's responses are <= ~70 tokens (2k vocab); longer is cut
    e.batch_size = 32 if smoke else 64          # generation rows per batch (fixed shape)
    e.prompt_len = 64              # prompt buckets: prompt_len * 2^k, at most max_prompt_len
    e.max_prompt_len = 1024
    # Multiple choice (no sampling), two exact layouts (mc.py): 'packed' (instance, option)
    # sequences in rows of mc_pack_len tokens, or 'prefix' (context once in a KV cache shared
    # by its options; prompt buckets as above, option buckets mc_option_len * 2^k);
    # 'auto' picks per instance the one with fewer padded tokens. Measured on 2 CPU cores
    # (small model, 30 mc benchmarks x 100): prefix 96 s, auto 146 s, packed 192 s.
    e.mc_mode = "prefix"
    e.mc_batch_rows = 16 if smoke else 32       # calls of about mc_batch_rows * mc_pack_len tokens
    e.mc_pack_len = 256            # tokens per packed row (a longer sequence: a row of the next
                                   # multiple of mc_pack_len / 2)
    e.mc_option_len = 32
    e.mc_max_len = 4096            # longest mc sequence / option / context
    e.mc_pool = 4000               # mc instances of several benchmarks scored together (resume unit)
    # Checkpoint loading (configs/eval.py): arm names and where params sit in the state tree.
    e.arm = "treatment"            # the arm of config.checkpoint
    e.compare_arm = "baseline"     # the arm of config.compare_checkpoint
    e.params_key = "params"        # dotted path of the params inside the checkpoint's state
    # Statistics.
    e.alpha = 0.05
    e.n_boot = 2000
    e.noninferiority_margin = 0.25 # log-odds margin of the selective-steering claim

    # Persona steering: untargeted benchmarks under held-out harmful / helpful personas.
    e.steering = ml_collections.ConfigDict()
    e.steering.enabled = True
    e.steering.n_per_benchmark = 8 if smoke else 50    # x 48 untargeted benchmarks, pooled
    e.steering.formats = ()        # [] = every format

    # Fine-tuning resistance: SFT on adversarial_sft (and benign_sft) for a sweep of steps.
    e.finetune = ml_collections.ConfigDict()
    e.finetune.enabled = True
    e.finetune.kinds = ("adversarial", "benign")
    e.finetune.steps = (0, 4, 8) if smoke else (0, 25, 50, 100)
    e.finetune.n_per_benchmark = 8 if smoke else 25    # non-health instances, pooled per sweep point
    e.finetune.exclude_domains = ("health",)     # evaluate transfer beyond the fine-tuned domain
    e.finetune.formats = ()
    e.finetune.seed = 0
    e.finetune.batch_size = 8 if smoke else 16
    e.finetune.seq_len = 256
    e.finetune.packing = True
    e.finetune.accum_steps = 1
    e.finetune.log_every = 5
    e.finetune.optimizer = optimizer_config(lr=1e-3, warmup_steps=2 if smoke else 5, decay="constant")
    return e


def validate_eval(e, n_data: int = 1) -> None:
    def need(ok, field, fix):
        if not ok:
            raise ValueError(f"config.eval.{field} is invalid: {fix}")
    need(e.samples_per_instance >= 1, "samples_per_instance", "must be >= 1")
    need(e.greedy or e.temperature > 0, "temperature", "must be > 0 (or greedy=True)")
    need(0 < e.top_p <= 1 and e.top_k >= 0, "top_p", "top_p in (0, 1], top_k >= 0")
    need(e.prompt_len >= 8 and e.max_prompt_len >= e.prompt_len, "prompt_len", "8 <= prompt_len <= max_prompt_len")
    need(e.mc_pack_len >= 16 and e.mc_max_len >= e.mc_pack_len, "mc_pack_len", "16 <= mc_pack_len <= mc_max_len")
    need(e.mc_mode in ("auto", "packed", "prefix"), "mc_mode", "'auto', 'packed' or 'prefix'")
    need(1 <= e.mc_option_len <= e.mc_max_len, "mc_option_len", "1 <= mc_option_len <= mc_max_len")
    need(e.max_new_tokens >= 1, "max_new_tokens", "must be >= 1")
    for f in ("batch_size", "mc_batch_rows"):
        need(e[f] >= 1 and e[f] % n_data == 0, f, f"must be a positive multiple of the data-parallel size {n_data}")
    need(min(e.n_per_benchmark, e.n_general, e.n_benign) >= 0, "n_per_benchmark", "sizes must be >= 0 (0 = all)")
    ft = e.finetune
    need(all(int(s) >= 0 for s in ft.steps) and len(ft.steps) >= 2, "finetune.steps",
         "at least two non-negative sweep points (0 is added when missing)")
    need(set(ft.kinds) <= {"adversarial", "benign"}, "finetune.kinds", "a subset of ['adversarial', 'benign']")
    need(ft.batch_size >= 1 and ft.batch_size % (n_data * ft.accum_steps) == 0, "finetune.batch_size",
         f"a positive multiple of data-parallel size x accum_steps = {n_data} x {ft.accum_steps}")


# ------------------------------------------------------------------------------- checkpoints
def load_checkpoint_params(path, params_like, params_key: str = "params"):
    """Params from an Orbax checkpoint of ours: a stage dir (with checkpoints/), a
    CheckpointManager dir (step subdirs; the latest is used) or one step dir. Restored
    straight into the shardings of `params_like`."""
    from beneficial import checkpoints

    path = pathlib.Path(path).absolute()
    if (path / "checkpoints").is_dir():
        path = path / "checkpoints"
    step = None
    if path.name.isdigit() and not any(p.name.isdigit() for p in path.iterdir() if p.is_dir()):
        path, step = path.parent, int(path.name)
    ckpt = checkpoints.Checkpointer(path)
    try:
        step = ckpt.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{path}: no Orbax checkpoint found (expected step directories)")
        target: Any = checkpoints.abstract_with_shardings(params_like)
        for part in reversed(params_key.split(".")):
            target = {part: target}
        restored = ckpt.manager.restore(step, args=checkpoints.ocp.args.Composite(
            state=checkpoints.ocp.args.PyTreeRestore(item=target, partial_restore=True)))
    finally:
        ckpt.close()
    out = restored["state"]
    for part in params_key.split("."):
        out = out[part]
    log.info("eval: loaded params from %s step %d", path, step)
    return out


# ------------------------------------------------------------------------------- helpers
def _stack(arrays) -> np.ndarray:
    return np.stack([np.asarray(a, np.float64) for a in arrays])


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=pathlib.Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _ensure_data(ctx):
    """data_dir and tokenizer of the run: from the context, else run the cached stages."""
    a = ctx.artifacts
    if "data_dir" not in a or "tokenizer" not in a:
        from beneficial import stages
        for name, key in (("data", "data_dir"), ("tokenizer", "tokenizer")):
            if key not in a:
                stages.run(name, ctx)
    return a["data_dir"], a["tokenizer"]


def _seed_list(policy) -> list:
    if isinstance(policy, tuple) and len(policy) == 2:
        return [policy]
    return list(policy)


# ------------------------------------------------------------------------------- the stage
class EvalNotFinished(FileNotFoundError):
    pass


def _prepare(ctx):
    """(config, eval section, mesh, rules, data_dir, tokenizer, suite), validated."""
    from beneficial.evals import registry

    c = ctx.config
    e = c.eval
    rules = [tuple(r) for r in c.mesh.rules]
    mesh = ctx.mesh
    n_data = int(mesh.shape.get("data", 1) * mesh.shape.get("fsdp", 1)) if mesh is not None else 1
    validate_eval(e, n_data)
    data_dir, tok = _ensure_data(ctx)
    if "model" in c and tok.vocab_size > int(c.model.vocab_size):
        raise ValueError(f"the tokenizer has {tok.vocab_size} pieces but config.model.vocab_size="
                         f"{c.model.vocab_size}: set --config.model.vocab_size={tok.vocab_size}")
    key = (str(data_dir), e.external_dir, tuple(e.benchmarks), tuple(e.exclude))
    cached = ctx.artifacts.get("eval_suite")
    if cached is None or cached[0] != key:   # built once per run (records load lazily, once)
        cached = (key, registry.default_suite(data_dir, c.world, e.external_dir or None,
                                              include=list(e.benchmarks), exclude=list(e.exclude)))
        ctx.artifacts["eval_suite"] = cached
    return c, e, mesh, rules, data_dir, tok, cached[1]


def evaluate_one(ctx, graphdef, params, out_dir, *, seed_index: int = 0, desc: str = "eval") -> dict:
    """Every enabled part (suite, capabilities, steering, fine-tuning) for one policy into
    out_dir/{suite,capabilities,steering,finetune}. params=None only loads finished results
    (raises EvalNotFinished when a part is missing): how a report is assembled later from
    the directories of separately evaluated policies (`report_from_dirs`)."""
    from beneficial.evals.runner import evaluate_capabilities, evaluate_policy

    c, e, mesh, rules, data_dir, tok, suite = _prepare(ctx)
    d = pathlib.Path(out_dir)
    common = dict(seed=int(e.seed) + int(seed_index), mesh=mesh, rules=rules)

    def need(x, part):
        if x is None:
            raise EvalNotFinished(f"{d / part}: evaluation not finished (run the eval stage for this policy)")
        return x

    r: dict = {}
    if e.suite:
        r["suite"] = need(evaluate_policy(graphdef, params, tok, suite, e, d / "suite", desc=desc, **common), "suite")
    if e.capabilities:
        r["capabilities"] = need(evaluate_capabilities(graphdef, params, tok, data_dir, e, d / "capabilities",
                                                       **common), "capabilities")
    if e.steering.enabled:
        from beneficial.evals.steering import run_steering
        r["steering"] = need(run_steering(graphdef, params, tok, suite, e, d / "steering",
                                          none_results=r.get("suite"), **common), "steering")
    if e.finetune.enabled:
        from beneficial.evals.finetune import finetune_sweep
        r["finetune"] = need(finetune_sweep(graphdef, params, tok, data_dir, suite, e, d / "finetune", **common),
                             "finetune")
    return r


def run_eval(ctx, policies: Mapping[str, Any], out_dir, *, arm_info: Mapping | None = None) -> dict | None:
    """Evaluate every arm (every seed: out_dir/<arm>/seed<k>/) and write out_dir/report/.
    Returns the results dict (None when the report is switched off or the results
    module is absent).

    ctx: anything with .config (world, eval, mesh sections), .mesh, .workdir and
    .artifacts (data_dir and tokenizer, or they are built by the data / tokenizer stages).
    policies: {arm: (graphdef, params) or [(graphdef, params) per seed]}.
    arm_info: optional {arm: {"seeds": [...], "checkpoints": [...], "compute": {...}}}."""
    t0 = time.perf_counter()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    out_dir = pathlib.Path(out_dir)
    suite = _prepare(ctx)[-1]
    log.info("eval: %d benchmarks (%d untargeted), %d arm(s): %s", len(suite),
             sum(not b.targeted for b in suite), len(policies), list(policies))
    per_arm = {arm: [evaluate_one(ctx, g, p, out_dir / arm / f"seed{k}", seed_index=k, desc=f"eval {arm}/seed{k}")
                     for k, (g, p) in enumerate(_seed_list(pol))]
               for arm, pol in policies.items()}
    return write_eval_report(ctx, per_arm, out_dir, arm_info=arm_info, started=started, t0=t0)


def report_from_dirs(ctx, eval_dirs: Mapping[str, Sequence], out_dir, *, arm_info: Mapping | None = None):
    """The report of policies evaluated separately (e.g. one eval stage per PPO run):
    eval_dirs = {arm: [evaluate_one's out_dir of each seed, in seed order]}. Nothing is
    recomputed: every part must be on disk with the current eval config."""
    per_arm = {arm: [evaluate_one(ctx, None, None, d, seed_index=k) for k, d in enumerate(dirs)]
               for arm, dirs in eval_dirs.items()}
    return write_eval_report(ctx, per_arm, out_dir, arm_info=arm_info)


def write_eval_report(ctx, per_arm: Mapping[str, list], out_dir, *, arm_info: Mapping | None = None,
                      started: str | None = None, t0: float | None = None, control: Mapping | None = None,
                      extra: Mapping | None = None) -> dict | None:
    """Per-arm, per-seed evaluate_one outputs -> out_dir/summary.json and out_dir/report/.
    control: the control world's {"per_instance", "arms"} (results.build_results); extra:
    further top-level results sections (e.g. learning curves), empty ones left out."""
    c, e = ctx.config, ctx.config.eval
    suite = _prepare(ctx)[-1]
    out_dir = pathlib.Path(out_dir)
    inputs = collect_inputs(suite, per_arm, arm_info or {})
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(_summary(inputs), indent=1))
    if not e.report:
        return None
    try:
        from beneficial.evals.report import write_report
        from beneficial.evals.results import build_results
    except ImportError as err:  # the statistics/report modules are optional here
        log.warning("eval: no report (%s); per-instance files are in %s", err, out_dir)
        return None
    arms = list(per_arm)
    baseline = e.baseline if e.baseline in per_arm else arms[0]
    experiment = {"config": json.loads(c.to_json_best_effort()) if hasattr(c, "to_json_best_effort") else {},
                  "git_commit": _git_commit(),
                  "started": started or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "wall_s": None}
    results = build_results(experiment, inputs["arms"], inputs["benchmarks"], inputs["per_instance"],
                            baseline=baseline, control=control, capabilities=inputs["capabilities"] or None,
                            steering=inputs["steering"] or None, finetune=inputs["finetune"] or None,
                            alpha=float(e.alpha), n_boot=int(e.n_boot), boot_seed=int(e.seed),
                            noninferiority_margin=float(e.noninferiority_margin))
    results.update({k: v for k, v in (extra or {}).items() if v})
    if t0 is not None:
        results["experiment"]["wall_s"] = time.perf_counter() - t0
    path = write_report(results, out_dir / "report")
    log.info("eval: report written to %s", path)
    return results


def collect_inputs(suite, per_arm: Mapping[str, list], arm_info: Mapping) -> dict:
    """Per-arm, per-seed runner outputs -> the inputs of results.build_results ([seed, instance])."""
    arms, per_instance, benchmarks = {}, {}, []
    capabilities, steering, finetune = {}, {}, {}
    for arm, runs in per_arm.items():
        info = dict(arm_info.get(arm, {}))
        info.setdefault("seeds", list(range(len(runs))))
        info.setdefault("checkpoints", [])
        info.setdefault("compute", {})
        arms[arm] = info
        if runs and "capabilities" in runs[0]:
            capabilities[arm] = {k: _stack([r["capabilities"][k] for r in runs]) for k in runs[0]["capabilities"]}
        if runs and "steering" in runs[0]:
            steering[arm] = {cnd: _stack([r["steering"]["pooled"][cnd] for r in runs])
                             for cnd in runs[0]["steering"]["pooled"]}
        if runs and "finetune" in runs[0]:
            finetune[arm] = {kind: {s: _stack([r["finetune"]["pooled"][kind][s] for r in runs]) for s in curve}
                             for kind, curve in runs[0]["finetune"]["pooled"].items()}
    for b in suite:
        grades = {}
        domains = None
        for arm, runs in per_arm.items():
            got = [r.get("suite", {}).get(b.name) for r in runs]
            if not got or any(g is None for g in got):
                continue
            ids = got[0]["ids"]
            if any(g["ids"] != ids for g in got):
                raise AssertionError(f"{b.name}: seeds of {arm} answered different instances")
            if domains is None:
                domains, ref_ids = got[0]["domains"], ids
            elif ids != ref_ids:
                raise AssertionError(f"{b.name}: arm {arm} answered different instances than the first arm")
            g = {"aligned": _stack([x["aligned"] for x in got]), "unclear": _stack([x["unclear"] for x in got])}
            if np.any((g["unclear"] > 0) & (g["aligned"] > 0)):
                # Several samples per instance: fractions of both; results.py wants them disjoint.
                g["unclear"] = np.where(g["aligned"] > 0, 0.0, g["unclear"])
            if "aligned_norm" in got[0]:
                g["aligned_norm"] = _stack([x["aligned_norm"] for x in got])
            grades[arm] = g
        if not grades:
            continue
        spec = b.spec()
        if domains is not None and all(d is not None for d in domains):
            spec["instance_domains"] = list(domains)
        benchmarks.append(spec)
        per_instance[b.name] = grades
    return {"arms": arms, "benchmarks": benchmarks, "per_instance": per_instance,
            "capabilities": capabilities, "steering": steering, "finetune": finetune}


def _summary(inputs) -> dict:
    """Plain rates per arm (readable without the statistics module)."""
    out = {}
    for name, g in inputs["per_instance"].items():
        out[name] = {arm: {"aligned": float(v["aligned"].mean()), "unclear": float(v["unclear"].mean()),
                           "n": int(v["aligned"].shape[1])} for arm, v in g.items()}
    caps = {arm: {k: float(np.mean(v)) for k, v in c.items()} for arm, c in inputs["capabilities"].items()}
    steer = {arm: {k: float(np.mean(v)) for k, v in c.items()} for arm, c in inputs["steering"].items()}
    ft = {arm: {kind: {str(s): float(np.mean(v)) for s, v in curve.items()} for kind, curve in c.items()}
          for arm, c in inputs["finetune"].items()}
    return {"benchmarks": out, "capabilities": caps, "steering": steer, "finetune": ft}


def _policies_from_checkpoints(ctx) -> tuple[dict, dict]:
    """{arm: (graphdef, params)} from config.checkpoint (+ config.compare_checkpoint)."""
    from beneficial.models.build import create_model

    c = ctx.config
    e = c.eval
    rules = [tuple(r) for r in c.mesh.rules]
    graphdef, like, _ = create_model(c.model, ctx.mesh, rules, 0, indivisible=c.mesh.indivisible)
    policies, info = {}, {}
    pairs = [(e.arm, c.get("checkpoint", ""))]
    if c.get("compare_checkpoint", ""):
        pairs.append((e.compare_arm, c.compare_checkpoint))
    for arm, path in pairs:
        if not path:
            continue
        policies[arm] = (graphdef, load_checkpoint_params(path, like, e.params_key))
        info[arm] = {"seeds": [0], "checkpoints": [str(path)], "compute": {}}
    return policies, info


@stage("eval")
def eval_stage(ctx):
    """Evaluate, in this order of preference:
      * config.checkpoint (+ config.compare_checkpoint): Orbax checkpoints (configs/eval.py),
        into eval.out_dir or <workdir>/eval/<arm>/seed0, report in .../eval/report;
      * ctx.artifacts["policies"] = {arm: (graphdef, params) | [per seed]}, likewise;
      * ctx.artifacts["policy"] (the pipeline's own policy, e.g. after `ppo`): into
        <run_dir>/eval (run_dir from the ppo stage, else <workdir>/eval), with a one-arm
        report there; arms evaluated this way are compared by `report_from_dirs`."""
    c = ctx.config
    a = ctx.artifacts
    policies, info = {}, dict(a.get("arm_info", {}))
    if c.get("checkpoint", ""):
        policies, ck_info = _policies_from_checkpoints(ctx)
        info.update(ck_info)
    elif "policies" in a:
        policies = dict(a["policies"])
    elif "policy" in a:
        arm = c.get("arm", "policy")
        out_dir = pathlib.Path(c.eval.out_dir or pathlib.Path(a.get("run_dir") or pathlib.Path(ctx.workdir)) / "eval")
        t0 = time.perf_counter()
        run = evaluate_one(ctx, *a["policy"], out_dir, seed_index=0, desc=f"eval {arm}")
        info.setdefault(arm, {"seeds": [int(c.get("seed", 0))], "checkpoints": [str(a.get("run_dir", ""))],
                              "compute": {}})
        results = write_eval_report(ctx, {arm: [run]}, out_dir, arm_info=info, t0=t0)
        a["eval_dir"], a["eval_results"] = out_dir, results
        return results
    if not policies:
        raise ValueError("eval: nothing to evaluate; set --config.checkpoint=PATH (or run a stage that "
                         "produces a policy first)")
    out_dir = pathlib.Path(c.eval.out_dir or (pathlib.Path(ctx.workdir) / "eval"))
    results = run_eval(ctx, policies, out_dir, arm_info=info)
    a["eval_dir"], a["eval_results"] = out_dir, results
    return results
