"""The `ppo` stage: RL post-training of the base policy on the arm's prompt mix.

Runs in workdir/<arm>/seed<k>/ (resumable); the critic starts from the reward model;
every prompt of every source is scored by the reward model so that arms match in
compute; the world's grader runs on trait rollouts as a diagnostic beside the reward.
"""
import json
import logging
import pathlib

import jax
import numpy as np

from beneficial import cache, compute
from beneficial.rl.data_mix import SOURCE_NAMES, PromptMix, filter_domains, filter_traits

log = logging.getLogger("beneficial")


def make_grader(tokenizer):
    """Host grader: exact answers for general tasks, the world's verdict elsewhere."""
    from beneficial.data.world import grade_general, grade_response

    def grade(batch, responses, mask):
        scores = np.zeros(len(responses), np.float32)
        verdicts = {name: [] for name in SOURCE_NAMES[1:]}
        for i, (rec, sid) in enumerate(zip(batch["records"], batch["source_ids"])):
            text = tokenizer.decode_response(responses[i][mask[i].astype(bool)])
            if sid == 0:
                scores[i] = grade_general(rec, text)
            else:
                g = grade_response(rec, text)
                scores[i] = float(g == "aligned")
                verdicts[SOURCE_NAMES[sid]].append(g)
        extra = {}
        for name, gs in verdicts.items():
            if gs:
                extra[f"grader/{name}_aligned"] = float(np.mean([g == "aligned" for g in gs]))
                extra[f"grader/{name}_unclear"] = float(np.mean([g == "unclear" for g in gs]))
        batch["host_metrics"] = extra
        return scores

    return grade


def rl_sources(data_dir, rl):
    from beneficial.data.stage import load
    general = load(data_dir, "rl_general")
    if rl.special_source == "traits":
        special = filter_traits(load(data_dir, "rl_traits"), rl.traits, rl.trait_domains)
    else:
        special = filter_domains(load(data_dir, "rl_placebo"), rl.trait_domains)
    return general, special


def score_stats(ppo, state, frozen, grade, data_dir, tokenizer, rl, workdir, reward_key):
    """Per-source score scale from the base policy's own samples: computed once per reward
    model and sampling setup, shared by every arm (PPO.md: one scale for all sources)."""
    from beneficial.data.pipeline import prompt_batches
    from beneficial.data.stage import load
    from beneficial.rl.ppo import estimate_score_stats
    from beneficial.rl.rewards import score_stats_from_dict, score_stats_to_dict

    fields = {k: rl[k] for k in ("temperature", "top_k", "top_p", "max_prompt_len", "max_response_len",
                                 "prompts_per_iteration", "stats_batches")}
    key = cache.stage_key("scorestats", {"reward": reward_key, **fields}, "1")
    path = cache.stage_dir(workdir, "scorestats", key)
    if cache.is_done(path):
        return score_stats_from_dict(json.loads((path / "stats.json").read_text()), list(SOURCE_NAMES))
    batches = []
    for sid, split in enumerate(("rl_general", "rl_traits", "rl_placebo")):
        src = load(data_dir, split)
        it = iter(prompt_batches(src, tokenizer, prompt_len=rl.max_prompt_len, batch_size=rl.prompts_per_iteration,
                                 seed=1234 + sid))
        for _ in range(rl.stats_batches):
            b = next(it)
            batches.append({"prompts": b["tokens"], "source_ids": np.full(len(b["tokens"]), sid, np.int32),
                            "records": [src[int(i)] for i in b["index"]]})
    stats = estimate_score_stats(ppo, state, frozen, batches, grade)
    with cache.building(path) as tmp:
        (tmp / "stats.json").write_text(json.dumps(score_stats_to_dict(stats, list(SOURCE_NAMES)), indent=1))
    return stats


def run_ppo(config, mesh, artifacts, workdir: pathlib.Path, run_dir: pathlib.Path | None = None,
            on_iteration=None):
    """(graphdef, final policy params, run_dir) of this arm and seed; run_dir defaults to
    workdir/<arm>/seed<k>. A finished run only restores its final state."""
    from beneficial.rl.loop import ppo_loop
    from beneficial.rl.ppo import init_critic_params, init_ppo_state, make_frozen, make_ppo

    rl = config.rl
    tok = artifacts["tokenizer"]
    base_gd, base_params = artifacts["base"]
    rm_gd, rm_params = artifacts["reward"]
    run_dir = pathlib.Path(run_dir) if run_dir is not None else workdir / config.arm / f"seed{config.seed}"
    rules = [tuple(r) for r in config.mesh.rules]
    general, special = rl_sources(artifacts["data_dir"], rl)
    mix = PromptMix(general, special, rl.special_source, tok, prompt_len=rl.max_prompt_len,
                    prompts_per_iteration=rl.prompts_per_iteration, iterations=rl.iterations,
                    fraction=rl.trait_fraction, seed=config.seed)
    critic_gd, critic = init_critic_params(rl, policy_cfg=config.model, policy_params=base_params,
                                           reward_params=rm_params, reward_graphdef=rm_gd)
    ppo = make_ppo(rl, policy_graphdef=base_gd, critic_graphdef=critic_gd, reward_graphdef=rm_gd,
                   eos_id=tok.eos_id, pad_id=tok.pad_id)
    state = init_ppo_state(rl, base_params, critic, ppo.tx_policy, ppo.tx_critic, seed=config.seed)
    grade = make_grader(tok)
    frozen = make_frozen(base_params, rm_params, None, len(SOURCE_NAMES))
    stats = score_stats(ppo, state, frozen, grade, artifacts["data_dir"], tok, rl, workdir, artifacts["reward_key"])
    log.info("ppo %s seed %d: %d of %d prompts from %s", config.arm, config.seed, mix.special_episodes,
             rl.iterations * rl.prompts_per_iteration, rl.special_source)
    state = ppo_loop(ppo=ppo, state=state, reference_params=base_params, reward_params=rm_params,
                     prompt_iter=mix, workdir=run_dir, grade=grade, score_stats=stats, mesh=mesh, rules=rules,
                     desc=f"ppo {config.arm} seed{config.seed}", on_iteration=on_iteration)
    write_compute(run_dir, config, mix.special_episodes)
    return base_gd, state["policy"], run_dir


def write_compute(run_dir, config, special_episodes):
    """Padded FLOPs of the run's programs (gated across arms) and real tokens (reported)."""
    from beneficial.metrics import read_metrics

    rows = read_metrics(run_dir)
    ledger = compute.ComputeLedger()
    per = compute.ppo_iteration_flops(config.model, config.model, config.rl)
    iters = len({r["step"] for r in rows if "objective/kl" in r})
    for program, flops in per.items():
        ledger.add(program, flops, calls=iters)
    ledger.real_tokens = int(sum(r.get("compute/sequence_tokens", 0) for r in rows))
    ledger.decode_steps = int(sum(r.get("perf/decode_steps", 0) for r in rows))
    out = {**ledger.to_dict(), "iterations": iters, "special_episodes": special_episodes,
           "special_source": config.rl.special_source}
    if jax.process_index() == 0:
        (run_dir / "compute.json").write_text(json.dumps(out, indent=1))
    return out
