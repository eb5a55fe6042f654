"""Our PPO iteration on bench settings, timed per phase (the `ours` runner of launch/bench.py).

    python -m beneficial.bench.ours_ppo --cell 1.5M/r32 --iterations 3 --out r.json

The same models (Llama-style policy, reference = copy, value and reward = scalar heads),
the same prompts (settings.make_prompts) and the same PPO shape as the peers. Phases:
  generation  jitted prefill + lax.while_loop decode over the KV cache
  scoring     one jitted program: old log-probs (training forward), reference, value and
              reward forwards, rewards, GAE, whitening
  update      one jitted program: epochs x minibatches of policy + value train steps
Each phase is synchronised (block_until_ready) so the split is exact.
"""
from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

from beneficial import sharding
from beneficial.bench import flops as flops_lib
from beneficial.bench.cli import runner_main
from beneficial.bench import settings as settings_lib
from beneficial.bench.peak_memory import peak_rss_bytes
from beneficial.bench.timing import median, now, summarize_phases
from beneficial.models.build import create_model
from beneficial.models.presets import model_config
from beneficial.rl.ppo import init_ppo_state, make_frozen, make_ppo, ppo_config


def model_cfg(s: dict):
    return model_config("tiny", vocab_size=s["vocab"], d_model=s["hidden"], n_layers=s["layers"],
                        n_heads=s["heads"], n_kv_heads=s["kv_heads"], head_dim=s["head_dim"],
                        d_ff=s["intermediate"], tie_embeddings=s["tie_embeddings"], dtype=s["dtype"],
                        max_seq_len=s["prompt_len"] + s["response_len"],
                        attn_query_blocks=s["attn_query_blocks"])


def setup_ours_ppo(s: dict, iterations: int):
    """(ppo, state, frozen, prompts, policy params, ppo config) for bench settings `s`."""
    cfg = model_cfg(s)
    mesh = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1})
    rules = sharding.DEFAULT_RULES
    c = ppo_config(max_prompt_len=s["prompt_len"], max_response_len=s["response_len"],
                   prompts_per_iteration=s["episodes_per_iteration"], num_ppo_epochs=s["num_ppo_epochs"],
                   num_minibatches=s["num_minibatches"], iterations=iterations, temperature=1.0,
                   source_names=["general"], source_scores=["reward_model"], missing_eos_penalty=None)
    pol_gd, policy, _ = create_model(cfg, mesh, rules, s["seed"])
    rm_gd, reward, _ = create_model(cfg, mesh, rules, s["seed"] + 1, head="scalar")
    _, critic, _ = create_model(cfg, mesh, rules, s["seed"] + 2, head="scalar")
    ppo = make_ppo(c, policy_graphdef=pol_gd, critic_graphdef=rm_gd, reward_graphdef=rm_gd,
                   eos_id=settings_lib.EOS_ID, pad_id=settings_lib.PAD_ID)
    state = init_ppo_state(c, policy, critic, ppo.tx_policy, ppo.tx_critic, seed=s["seed"])
    frozen = make_frozen(jax.tree.map(jnp.copy, policy), reward, None, 1)
    prompts = jnp.asarray(settings_lib.make_prompts(s))
    return ppo, state, frozen, prompts, policy, c


def rollout_batch(ppo, state, prompts, key):
    """(generated tokens, the batch to score) of one iteration, synchronised."""
    e = prompts.shape[0]
    gen = jax.block_until_ready(ppo.rollout.generate_step(state, prompts, key))
    batch = {"prompts": prompts, "responses": gen["tokens"], "response_mask": gen["mask"],
             "source_ids": jnp.zeros((e,), jnp.int32), "grader_scores": jnp.zeros((e,), jnp.float32)}
    return gen, batch


def run_ours_ppo(s: dict, iterations: int, warmup: int = 1) -> dict:
    s = settings_lib.make_settings(**s)
    ppo, state, frozen, prompts, policy, c = setup_ours_ppo(s, warmup + iterations)
    records, decode_steps = [], []
    for it in range(warmup + iterations):
        key = jax.random.fold_in(jax.random.key(s["seed"]), it)
        t0 = now()
        gen, batch = rollout_batch(ppo, state, prompts, key)
        t1 = now()
        rb, _ = jax.block_until_ready(ppo.rollout.score_step(state, frozen, batch))
        t2 = now()
        state, _ = jax.block_until_ready(ppo.update(state, rb, jax.random.fold_in(key, 1)))
        t3 = now()
        records.append({"generation": t1 - t0, "scoring": t2 - t1, "update": t3 - t2, "total": t3 - t0})
        decode_steps.append(int(gen["steps"]))
    timed = records[warmup:]
    summary = summarize_phases(timed)
    flops = flops_lib.ppo_iteration_flops(s, policy_rescore=True)  # we re-score old log-probs
    med = summary["phases_median_s"]
    achieved = {k: flops[k] / med[k] for k in ("generation", "scoring", "update") if med.get(k)}
    achieved["total"] = flops["total"] / summary["iteration_median_s"]
    e = s["episodes_per_iteration"]
    work = dict(episodes=e, generated_tokens=e * int(median(decode_steps[warmup:])),
                sequence_len=s["prompt_len"] + s["response_len"], ppo_epochs=c.num_ppo_epochs,
                minibatches_per_epoch=c.num_minibatches, minibatch_episodes=e // c.num_minibatches,
                optimizer_steps=c.num_ppo_epochs * c.num_minibatches, update_sequences=c.num_ppo_epochs * e)
    return dict(framework="ours", available=True, versions=dict(jax=jax.__version__), settings=s,
                warmup=warmup, **summary, work=work, work_mismatches=flops_lib.check_work(work, s),
                params=int(sum(np.prod(x.shape) for x in jax.tree.leaves(policy))), flops=flops,
                achieved_flops_per_s=achieved, peak_rss_bytes=peak_rss_bytes(),
                compiles={"generate": ppo.rollout.generate_step._cache_size(),
                          "score": ppo.rollout.score_step._cache_size(), "update": ppo.update._cache_size()})


def main(argv=None) -> int:
    return runner_main("ours", run_ours_ppo, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
