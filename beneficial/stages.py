"""The pipeline's stages by name. Each takes the shared Context and fills in what later
stages need (dataset dir, tokenizer path, base checkpoint, ...)."""
import dataclasses
import logging
import pathlib
from typing import Any, Callable

import jax
import numpy as np

log = logging.getLogger("beneficial")

STAGES: dict[str, Callable] = {}


@dataclasses.dataclass
class Context:
    config: Any
    mesh: Any
    workdir: pathlib.Path
    artifacts: dict = dataclasses.field(default_factory=dict)  # stage outputs by name


def stage(name):
    def register(fn):
        STAGES[name] = fn
        return fn
    return register


def run(name: str, ctx: Context):
    if name not in STAGES:
        raise ValueError(f"config.stages contains {name!r}, which is not a stage; "
                         f"available: {sorted(STAGES)}")
    log.info("=== stage %s ===", name)
    return STAGES[name](ctx)


def model_rules(ctx):
    return [tuple(r) for r in ctx.config.mesh.rules]


@stage("summary")
def summary(ctx: Context):
    """Parameter count and the sharding of every parameter, from shapes alone."""
    from beneficial import sharding
    from beneficial.models.build import abstract_model

    cfg = ctx.config.model
    _, abstract = abstract_model(cfg)
    shardings = sharding.state_shardings(abstract, ctx.mesh, model_rules(ctx), ctx.config.mesh.indivisible)
    print(sharding.describe(abstract, shardings))
    n = sharding.count_params(abstract)
    print(f"model preset {cfg.preset}: {n:,} parameters on mesh {dict(ctx.mesh.shape)}")
    ctx.artifacts["n_params"] = n
    return n


@stage("sample")
def sample(ctx: Context):
    """Sample from the newest available policy (or a random init) to see the model work."""
    from beneficial.models.build import create_model
    from beneficial.models.sampler import SamplingConfig, make_generate

    c = ctx.config
    tok = ctx.artifacts.get("tokenizer")
    graphdef, state = ctx.artifacts.get("policy", (None, None))
    if graphdef is None:
        graphdef, state, _ = create_model(c.model, ctx.mesh, model_rules(ctx), c.seed,
                                          indivisible=c.mesh.indivisible)
    if tok is not None:
        ids = tok.encode_prompt([{"role": "user", "content": c.sample.prompt}])
        eos, pad = tok.eos_id, tok.pad_id
    else:  # no tokenizer yet: token ids of a random model, to show the sampler runs
        ids, eos, pad = list(range(3, 11)), 2, 0
    sc = SamplingConfig(max_new_tokens=c.sample.max_new_tokens, eos_id=eos, pad_id=pad,
                        temperature=c.sample.temperature, top_k=c.sample.top_k,
                        top_p=c.sample.top_p, greedy=c.sample.greedy)
    prompt = np.tile(np.asarray(ids, np.int32)[None], (c.sample.batch_size, 1))
    out = make_generate(graphdef, sc)(state, prompt, jax.random.key(c.seed))
    for row, mask in zip(np.asarray(out["tokens"]), np.asarray(out["mask"])):
        row = row[mask.astype(bool)]
        print("->", tok.decode(row.tolist()) if tok is not None else row.tolist())
    return out


@stage("data")
def data(ctx: Context):
    from beneficial.data.stage import build_data, build_user_data
    c = ctx.config
    if c.data.source == "jsonl":
        ctx.artifacts["data_dir"], ctx.artifacts["data_key"] = build_user_data(ctx.workdir, c.data.files.to_dict())
    elif c.data.source == "world":
        ctx.artifacts["data_dir"], ctx.artifacts["data_key"] = build_data(ctx.workdir, c.world)
    else:
        raise ValueError(f"config.data.source={c.data.source!r}; use 'world' or 'jsonl'")


@stage("tokenizer")
def tokenizer(ctx: Context):
    from beneficial.data.stage import build_tokenizer, check_tags_are_one_piece, tag_symbols
    _need(ctx, "data")
    c = ctx.config
    tagged = c.data.source == "world" and c.world.behaviour_tags
    ctx.artifacts["tokenizer"], ctx.artifacts["tokenizer_key"] = build_tokenizer(
        ctx.workdir, ctx.artifacts["data_dir"], ctx.artifacts["data_key"], c.tokenizer,
        pretrained=c.init.tokenizer or c.init.hf_path, family=c.model.family,
        symbols=tuple(tag_symbols()) if tagged else ())
    if tagged:
        check_tags_are_one_piece(ctx.artifacts["tokenizer"], c.tokenizer.vocab_size)


@stage("base")
def base(ctx: Context):
    from beneficial.train.pretrain import base_key, build_base
    _need(ctx, "data", "tokenizer")
    a = ctx.artifacts
    graphdef, params, path = build_base(ctx.config, ctx.mesh, a["data_dir"], a["data_key"], a["tokenizer"],
                                        a["tokenizer_key"], ctx.workdir)
    a["base"] = (graphdef, params)
    a["policy"] = (graphdef, params)
    a["base_key"] = base_key(ctx.config, a["data_key"], a["tokenizer_key"])
    a["base_path"] = path


@stage("competence")
def competence(ctx: Context):
    """Rerun the world-competence checks on the current policy (the base, or a PPO policy
    when it follows `ppo`) and write <workdir>/competence.json; cached stages are not touched."""
    import json

    from beneficial.evals.competence import world_competence
    _need(ctx, "data", "tokenizer", "base")  # `base` sets the policy unless `ppo` replaced it
    graphdef, params = ctx.artifacts["policy"]
    c = ctx.config
    report = world_competence(graphdef, params, ctx.artifacts["tokenizer"], ctx.artifacts["data_dir"],
                              c.pretrain.competence, c.world)
    out = ctx.workdir / "competence.json"
    out.write_text(json.dumps(report, indent=2))
    log.info("competence -> %s: %s", out, json.dumps(report, indent=1))
    return report


@stage("persona_probe")
def persona_probe(ctx: Context):
    """Can a linear probe read the revealed persona from the current policy's hidden state where
    the assistant is about to answer (beneficial/probe.py)? Fitted on the policy and, as the
    control, on the same shape at initialisation; writes <workdir>/persona_probe.json."""
    import json

    from beneficial.models.build import create_model
    from beneficial.probe import fit_persona_probe
    _need(ctx, "data", "tokenizer", "base")
    c, a = ctx.config, ctx.artifacts
    graphdef, params = a["policy"]
    _, init_params, _ = create_model(c.model, ctx.mesh, model_rules(ctx), c.pretrain.seed,
                                     indivisible=c.mesh.indivisible)
    report = {name: fit_persona_probe(graphdef, p, a["tokenizer"], a["data_dir"], c.pretrain.competence.probe,
                                      ctx.workdir / f"persona_probe_{name}.npz")
              for name, p in (("policy", params), ("init", init_params))}
    out = ctx.workdir / "persona_probe.json"
    out.write_text(json.dumps(report, indent=2))
    log.info("persona probe -> %s: held-out accuracy %.3f (policy), %.3f (same shape at init)", out,
             report["policy"]["accuracy"], report["init"]["accuracy"])
    return report


@stage("reward")
def reward(ctx: Context):
    from beneficial.train.reward import build_reward
    _need(ctx, "data", "tokenizer", "base")
    a = ctx.artifacts
    graphdef, params, path = build_reward(ctx.config, ctx.mesh, a["data_dir"], a["tokenizer"], a["base"][1],
                                          a["base_key"], a["base"][0], ctx.workdir)
    a["reward"] = (graphdef, params)
    a["reward_path"] = path


_PRODUCES = {"data": "data_dir", "tokenizer": "tokenizer", "base": "base", "reward": "reward"}


def _need(ctx: Context, *names):
    """Run (cached) prerequisite stages that this invocation has not run yet."""
    for name in names:
        if _PRODUCES[name] not in ctx.artifacts:
            run(name, ctx)


@stage("ppo")
def ppo(ctx: Context):
    from beneficial.rl.stage import run_ppo
    from beneficial.train.reward import reward_key
    _need(ctx, "data", "tokenizer", "base", "reward")
    a = ctx.artifacts
    a["reward_key"] = reward_key(ctx.config, a["base_key"])
    graphdef, params, run_dir = run_ppo(ctx.config, ctx.mesh, a, ctx.workdir)
    a["policy"] = (graphdef, params)
    a["run_dir"] = run_dir


@stage("data_summary")
def data_summary(ctx: Context):
    """Counts per split, family, domain, persona and pack; token lengths; sample records."""
    from beneficial.data.stage import load
    from beneficial.data.summary import format_summary, summarize
    from beneficial.data.tfds_store import list_splits
    _need(ctx, "data", "tokenizer")
    d = ctx.artifacts["data_dir"]
    records = {s: list(load(d, s)) for s in list_splits(d)}
    summary = summarize(records, ctx.artifacts["tokenizer"])
    print(format_summary(summary, records, samples=ctx.config.data.summary_samples))
    return summary


from beneficial.evals import stage as _eval_stage  # noqa: E402,F401  (registers the "eval" stage)
from beneficial import experiment as _experiment  # noqa: E402,F401  (registers "experiment")
