"""PPO for language models: the config section, the state, and the jitted steps.

One PPO iteration is three programs and one host call (the loop is in rl/loop.py):

    gen   = generate_step(state, prompts, key)                       jit: sample with the policy
    gs    = grade(host_batch, gen tokens, gen mask)                   host: exact graders
    batch, rollout_metrics = score_step(state, frozen, batch_in)      jit: score, reward, GAE
    state, update_metrics  = update(state, batch, key)                jit, donates state

State (a pure pytree; what checkpoints hold):
    {'policy': params, 'policy_opt': optax state, 'critic': params (scalar head),
     'critic_opt': optax state, 'beta': f32 KL coefficient (the KL controller's state),
     'step': i32 iterations done, 'rng': u32 key data (constant; per-iteration keys are
     fold_in(rng, step), see `iteration_keys`)}
Frozen (never donated, never updated):
    {'reference': params, 'reward_model': params (scalar head),
     'score_mean': f32[S], 'score_std': f32[S]}  (per-source standardisation, `make_frozen`)

Batch into score_step (all [B, ...] rows):
    prompts [B,P] i32 left-padded with pad_id, responses [B,N] i32, response_mask [B,N]
    (from generate_step: 1 through the first EOS), source_ids [B] i32 in [0, S),
    grader_scores [B] f32 (the host grader's score; read only for rows whose source
    scores with 'grader' or 'sum'; anything, NaN included, elsewhere).
score_step adds: logprobs (old policy, training forward pass at the sampling temperature),
ref_logprobs, values, rm_scores, raw_scores (the per-source choice), scores (standardised,
EOS-penalised: what enters the reward), kl [B] (per-sequence KL estimate), rewards,
advantages (whitened over the batch), returns, has_eos.

Order of the reward computation (PPO.md): raw score chosen per source -> standardised
with the saved per-source stats -> missing-EOS penalty -> per-token KL (estimator from
config; k1 is the one whose reward gives the gradient of the KL-regularised objective) ->
per-token rewards (-beta kl_t, + score on the last real token) -> optional reward
whitening (shift_mean=False) -> GAE -> advantage whitening over the whole rollout batch.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from beneficial.models.build import abstract_model
from beneficial.models.sampler import SamplingConfig, generate
from beneficial.rl.advantages import gae, masked_count, masked_mean, masked_whiten
from beneficial.rl.kl import ESTIMATORS, kl_controller_update, per_token_kl, sequence_kl
from beneficial.rl.losses import policy_loss, value_loss
from beneficial.rl.rewards import (MISSING_EOS_MODES, ScoreStats, apply_missing_eos_penalty,
                                   compute_score_stats, contains_eos, per_source_mean,
                                   per_token_rewards, standardize_scores)
from beneficial.rl.scoring import score_sequences
from beneficial.train.optim import make_optimizer, optimizer_config

SCORE_CHOICES = ("grader", "reward_model", "sum")
CRITIC_INITS = ("reward_model", "policy")
# Rows the update reads (everything else in the rollout batch is for metrics).
UPDATE_KEYS = ("prompts", "responses", "response_mask", "logprobs", "values", "advantages", "returns")


# =========================================================================== config

_DEFAULTS = dict(
    # --- sampling (RL default: temperature only) -------------------------------------
    temperature=0.7, top_k=0, top_p=1.0,
    max_prompt_len=64,          # P: prompts are left-padded to exactly this length
    max_response_len=48,        # N: fixed, so shapes never change
    # --- batch shapes -----------------------------------------------------------------
    prompts_per_iteration=64,   # B rollouts per iteration (one response per prompt)
    num_ppo_epochs=4,
    num_minibatches=4,          # B / num_minibatches rows per optimizer step
    micro_batches=1,            # gradient accumulation inside a minibatch
    iterations=200,
    # --- optimizers (AdamW + global-norm clipping; one per model) ---------------------
    lr=3e-6,                    # policy
    critic_lr=3e-6,
    warmup_steps=0,             # in optimizer steps (iterations x epochs x minibatches in all)
    lr_decay="linear",          # 'linear' | 'cosine' | 'constant' (TRL: linear to 0)
    final_lr_fraction=0.0,
    weight_decay=0.0,
    adam_b1=0.9, adam_b2=0.999,
    adam_eps=1e-5,              # "N+ implementation details": 1e-5, not 1e-8
    clip_norm=1.0,
    # --- KL penalty ---------------------------------------------------------------------
    kl_coef=0.05,               # initial (or fixed) beta
    kl_estimator="k1",          # in the reward: k1 is the unbiased-gradient choice
    adaptive_kl=False,
    target_kl=6.0,              # nats per sequence (adaptive controller)
    kl_horizon=10000.0,         # in samples
    # --- advantages -----------------------------------------------------------------------
    gamma=1.0, lam=0.95,
    whiten_rewards=False,
    # --- losses -------------------------------------------------------------------------
    cliprange=0.2,
    cliprange_low=None, cliprange_high=None,   # asymmetric clip (None = cliprange)
    dual_clip=None,             # c > 1 or None
    cliprange_value=0.2,        # None = unclipped value loss
    vf_coef=0.1,
    entropy_coef=0.0,
    # --- scores ---------------------------------------------------------------------------
    source_names=["general"],   # source id i of a prompt row is source_names[i]
    source_scores=["grader"],   # per source: 'grader' | 'reward_model' | 'sum'
    missing_eos_penalty=1.0,    # in standard deviations of the source; None = off
    missing_eos_mode="replace",  # 'replace': score := -penalty; 'subtract': score - penalty
    # --- run ------------------------------------------------------------------------------
    checkpoint_every=20,        # iterations
    keep_checkpoints=2,
    critic_init="reward_model",  # 'reward_model' | 'policy' (policy body, zero value head)
    seed=0,
)


def ppo_config(**overrides) -> ml_collections.ConfigDict:
    """The PPO config section (config.rl in experiment configs), validated.

    Every knob is a field (see _DEFAULTS for meanings); an unknown override is an error.
    """
    unknown = sorted(set(overrides) - set(_DEFAULTS))
    if unknown:
        raise ValueError(f"ppo_config: unknown field(s) {unknown}; valid fields: {sorted(_DEFAULTS)}")
    fields = dict(_DEFAULTS)
    fields.update(overrides)
    fields["source_names"] = tuple(fields["source_names"])  # tuples: overridable from the command line
    fields["source_scores"] = tuple(fields["source_scores"])
    c = ml_collections.ConfigDict(fields, type_safe=False)  # None-able floats stay overridable
    validate_ppo_config(c)
    return c


def validate_ppo_config(c, prefix: str = "rl", data_parallel: int | None = None) -> None:
    """Raise ValueError naming the field, its value and what is allowed.

    data_parallel: the mesh's data*fsdp size, if known; every micro-batch must split
    evenly over it.
    """
    def check(ok, field, why):
        if not ok:
            raise ValueError(f"config.{prefix}.{field}={c[field]!r} is invalid: {why}")

    def is_int(x):
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

    def is_num(x):
        return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)

    for f in ("max_prompt_len", "max_response_len", "prompts_per_iteration", "num_ppo_epochs",
              "num_minibatches", "micro_batches", "iterations", "checkpoint_every", "keep_checkpoints"):
        check(is_int(c[f]) and c[f] >= 1, f, "must be an integer >= 1")
    for f in ("warmup_steps", "top_k", "seed"):
        check(is_int(c[f]) and c[f] >= 0, f, "must be an integer >= 0")
    check(is_num(c.temperature) and c.temperature > 0, "temperature", "must be > 0")
    check(is_num(c.top_p) and 0 < c.top_p <= 1, "top_p", "must be in (0, 1] (1 = off)")
    check(c.prompts_per_iteration % c.num_minibatches == 0, "num_minibatches",
          f"must divide prompts_per_iteration={c.prompts_per_iteration}")
    mb = c.prompts_per_iteration // c.num_minibatches
    check(mb % c.micro_batches == 0, "micro_batches",
          f"must divide the minibatch size prompts_per_iteration / num_minibatches = {mb}")
    if data_parallel is not None:
        rows = mb // c.micro_batches
        check(rows % data_parallel == 0, "micro_batches",
              f"a micro-batch of {rows} rows (prompts_per_iteration / num_minibatches / micro_batches) "
              f"must be divisible by the data-parallel size data*fsdp={data_parallel}")
    for f in ("lr", "critic_lr", "adam_eps", "clip_norm", "kl_horizon", "target_kl", "cliprange"):
        check(is_num(c[f]) and c[f] > 0, f, "must be > 0")
    for f in ("weight_decay", "kl_coef", "vf_coef", "entropy_coef", "final_lr_fraction"):
        check(is_num(c[f]) and c[f] >= 0, f, "must be >= 0")
    for f in ("adam_b1", "adam_b2"):
        check(is_num(c[f]) and 0 <= c[f] < 1, f, "must be in [0, 1)")
    check(c.lr_decay in ("linear", "cosine", "constant"), "lr_decay", "use 'linear', 'cosine' or 'constant'")
    check(c.kl_estimator in ESTIMATORS, "kl_estimator", f"use one of {ESTIMATORS} (k1 is the default)")
    check(isinstance(c.adaptive_kl, bool), "adaptive_kl", "must be True or False")
    check(isinstance(c.whiten_rewards, bool), "whiten_rewards", "must be True or False")
    for f in ("gamma", "lam"):
        check(is_num(c[f]) and 0 <= c[f] <= 1, f, "must be in [0, 1]")
    for f in ("cliprange_low", "cliprange_high", "cliprange_value"):
        check(c[f] is None or (is_num(c[f]) and c[f] > 0), f, "must be > 0 or None")
    check(c.cliprange_low is None or c.cliprange_low < 1, "cliprange_low", "must be < 1 (ratio floor 1 - eps_low > 0)")
    check(c.dual_clip is None or (is_num(c.dual_clip) and c.dual_clip > 1), "dual_clip", "must be > 1 or None")
    check(c.missing_eos_penalty is None or (is_num(c.missing_eos_penalty) and c.missing_eos_penalty >= 0),
          "missing_eos_penalty", "must be >= 0 (a magnitude in source standard deviations) or None")
    check(c.missing_eos_mode in MISSING_EOS_MODES, "missing_eos_mode", f"use one of {MISSING_EOS_MODES}")
    check(c.critic_init in CRITIC_INITS, "critic_init", f"use one of {CRITIC_INITS}")
    names, scores = list(c.source_names), list(c.source_scores)
    check(len(names) >= 1 and all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names),
          "source_names", "must be a non-empty list of distinct names")
    check(len(scores) == len(names), "source_scores",
          f"needs one entry per source in source_names={names}")
    check(all(s in SCORE_CHOICES for s in scores), "source_scores", f"each entry must be one of {SCORE_CHOICES}")


def total_optimizer_steps(c) -> int:
    return c.iterations * c.num_ppo_epochs * c.num_minibatches


def make_optimizers(c):
    """(tx_policy, lr_policy, tx_critic, lr_critic): AdamW + clipping, warmup then decay."""
    total = total_optimizer_steps(c)

    def one(lr):
        oc = optimizer_config(lr=lr, warmup_steps=c.warmup_steps, decay=c.lr_decay,
                              final_lr_fraction=c.final_lr_fraction, weight_decay=c.weight_decay,
                              b1=c.adam_b1, b2=c.adam_b2, eps=c.adam_eps, clip_norm=c.clip_norm)
        return make_optimizer(oc, total)

    tx_p, sched_p = one(c.lr)
    tx_c, sched_c = one(c.critic_lr)
    return tx_p, sched_p, tx_c, sched_c


def sampling_config(c, eos_id: int, pad_id: int) -> SamplingConfig:
    return SamplingConfig(max_new_tokens=c.max_response_len, eos_id=eos_id, pad_id=pad_id,
                          temperature=c.temperature, top_k=c.top_k, top_p=c.top_p, greedy=False)


# =========================================================================== state

def _copy(tree):
    # Fresh buffers: the update donates the state, so nothing in it may alias a frozen
    # model (the policy starts as the reference, the critic as the reward model).
    return jax.tree.map(jnp.copy, tree)


def init_critic_params(c, *, policy_cfg=None, policy_params=None, reward_params=None,
                       reward_graphdef=None):
    """(critic_graphdef, critic_params) per c.critic_init.

    'reward_model': a copy of the reward model (its graphdef must be given).
    'policy': the policy's body with a zero-initialised scalar head (so V = 0 at start).
    """
    if c.critic_init == "reward_model":
        if reward_params is None or reward_graphdef is None:
            raise ValueError("critic_init='reward_model' needs reward_params and reward_graphdef")
        return reward_graphdef, _copy(reward_params)
    if policy_params is None or policy_cfg is None:
        raise ValueError("critic_init='policy' needs policy_params and policy_cfg")
    graphdef, abstract = abstract_model(policy_cfg, "scalar")
    src = nnx.to_pure_dict(policy_params)
    target = nnx.to_pure_dict(abstract)
    repl = _replicated_like(policy_params)

    def fill(t, s):
        if isinstance(t, dict):
            return {k: fill(v, s.get(k) if isinstance(s, dict) else None) for k, v in t.items()}
        if s is not None:
            if tuple(s.shape) != tuple(t.shape):
                raise ValueError(f"critic_init='policy': shape {s.shape} != {t.shape}")
            return jnp.copy(s)
        return jax.device_put(jnp.zeros(t.shape, t.dtype), repl)  # the new value head (small, replicated)

    nnx.replace_by_pure_dict(abstract, fill(target, src))
    return graphdef, abstract


def init_ppo_state(c, policy_params, critic_params, tx_policy, tx_critic, seed: int | None = None):
    """The PPO state pytree, every leaf committed to a fixed sharding.

    Parameters are copied (see _copy) and keep their shardings; optimizer moments follow
    their parameters; scalars are replicated over the parameters' mesh. The update's
    outputs are pinned to these shardings, so no step ever recompiles on a new layout.
    """
    seed = c.seed if seed is None else seed
    policy, critic = _copy(policy_params), _copy(critic_params)
    state = {"policy": policy, "policy_opt": _init_opt(tx_policy, policy),
             "critic": critic, "critic_opt": _init_opt(tx_critic, critic),
             "beta": jnp.asarray(c.kl_coef, jnp.float32), "step": jnp.asarray(0, jnp.int32),
             "rng": jax.random.key_data(jax.random.key(seed))}
    repl = _replicated_like(policy)
    shardings = {k: (jax.tree.map(lambda x: x.sharding, v) if k in ("policy", "critic")
                     else state_opt_shardings(v, state[k.replace("_opt", "")], repl) if k.endswith("_opt")
                     else repl)
                 for k, v in state.items()}
    return jax.device_put(state, shardings)


def _replicated_like(params):
    s = jax.tree.leaves(params)[0].sharding
    if isinstance(s, jax.sharding.NamedSharding):
        return jax.sharding.NamedSharding(s.mesh, jax.sharding.PartitionSpec())
    return jax.sharding.SingleDeviceSharding(list(s.device_set)[0])


def _init_opt(tx, params):
    return jax.jit(tx.init)(params)


def state_opt_shardings(opt_state, params, replicated):
    """Shardings of an optax state: subtrees shaped like the parameters (Adam's moments)
    take the parameters' shardings, everything else (counts) is replicated."""
    pstruct = jax.tree.structure(params)
    psh = jax.tree.map(lambda x: x.sharding, params)
    is_param_tree = lambda x: not isinstance(x, jax.Array) and jax.tree.structure(x) == pstruct  # noqa: E731
    return jax.tree.map(lambda x: psh if is_param_tree(x) else replicated, opt_state, is_leaf=is_param_tree)


def identity_score_stats(num_sources: int) -> ScoreStats:
    return ScoreStats(mean=jnp.zeros((num_sources,), jnp.float32), std=jnp.ones((num_sources,), jnp.float32),
                      count=jnp.zeros((num_sources,), jnp.float32))


def make_frozen(reference_params, reward_params, score_stats: ScoreStats | None, num_sources: int) -> dict:
    """The frozen inputs of score_step. score_stats None = identity (raw scores)."""
    stats = identity_score_stats(num_sources) if score_stats is None else score_stats
    mean, std = np.asarray(stats.mean, np.float32), np.asarray(stats.std, np.float32)
    if mean.shape != (num_sources,) or std.shape != (num_sources,):
        raise ValueError(f"score stats have shape {mean.shape}, expected ({num_sources},)")
    # Always the same placement (replicated next to the reference), whatever the stats
    # came from, so score_step never sees a new input layout.
    place = (lambda x: jax.device_put(x, _replicated_like(reference_params))) if reference_params is not None \
        else jnp.asarray
    mean, std = place(mean), place(std)
    return {"reference": reference_params, "reward_model": reward_params, "score_mean": mean, "score_std": std}


def iteration_keys(rng_data, iteration: int):
    """(generate_key, update_key) of an iteration: the state's key folded with the step."""
    key = jax.random.fold_in(jax.random.wrap_key_data(jnp.asarray(rng_data)), iteration)
    return tuple(jax.random.split(key))


# =========================================================================== rollout

class Rollout(NamedTuple):
    generate_step: Callable   # jit (state, prompts, key) -> {'tokens','mask','logprobs','steps'}
    score_step: Callable      # jit (state, frozen, batch) -> (batch, metrics)
    needs_grader: bool        # whether any source reads grader scores

    def __call__(self, state, frozen, prompts, source_ids, key, grade=None, host_batch=None):
        """The host-level rollout: generate -> grade on the host -> score."""
        gen = self.generate_step(state, prompts, key)
        b = prompts.shape[0]
        if self.needs_grader:
            if grade is None:
                raise ValueError("a source scores with 'grader' but no grade callback was given")
            tokens, mask = jax.device_get((gen["tokens"], gen["mask"]))
            gs = np.asarray(grade(host_batch, tokens, mask), np.float32).reshape(b)
        else:
            gs = np.zeros((b,), np.float32)
        batch = {"prompts": prompts, "responses": gen["tokens"], "response_mask": gen["mask"],
                 "source_ids": jnp.asarray(source_ids, jnp.int32), "grader_scores": jnp.asarray(gs)}
        out, metrics = self.score_step(state, frozen, batch)
        metrics = dict(metrics, **{"perf/decode_steps": gen["steps"]})
        return out, metrics


def make_rollout(c, *, policy_graphdef, critic_graphdef, reward_graphdef, eos_id: int, pad_id: int,
                 reference_graphdef=None) -> Rollout:
    """Jitted generate_step and score_step (see the module docstring)."""
    reference_graphdef = policy_graphdef if reference_graphdef is None else reference_graphdef
    sc = sampling_config(c, eos_id, pad_id)
    num_sources = len(c.source_names)
    codes = np.asarray([SCORE_CHOICES.index(s) for s in c.source_scores], np.int32)
    penalty, mode = c.missing_eos_penalty, c.missing_eos_mode
    score = functools.partial(score_sequences, pad_id=pad_id)
    temperature = float(c.temperature)

    def generate_step(state, prompts, key):
        return generate(policy_graphdef, state["policy"], prompts, key, sc)

    def score_step(state, frozen, batch):
        prompts, responses = batch["prompts"], batch["responses"]
        mask = batch["response_mask"] > 0
        src = jnp.clip(jnp.asarray(batch["source_ids"], jnp.int32), 0, num_sources - 1)
        # --- the four scoring passes (the RM scores every row, whatever its source) ---
        logp, ent = score(policy_graphdef, state["policy"], prompts, responses, mask, temperature, "lm",
                          with_entropy=True)
        ref_logp = score(reference_graphdef, frozen["reference"], prompts, responses, mask, temperature, "lm")
        values = score(critic_graphdef, state["critic"], prompts, responses, mask, kind="value")
        rm = score(reward_graphdef, frozen["reward_model"], prompts, responses, mask, kind="reward")
        # --- the score of each row, from its source -----------------------------------
        g = jnp.asarray(batch["grader_scores"], jnp.float32)
        g_ok = jnp.isfinite(g)
        g0 = jnp.where(g_ok, g, 0.0)
        choice = jnp.asarray(codes)[src]
        # A non-finite grader score of a grader row propagates (the update's guard stops
        # the run); reward-model rows never read theirs.
        raw = jnp.where(choice == 0, g, jnp.where(choice == 1, rm, g + rm))
        stats = ScoreStats(mean=frozen["score_mean"], std=frozen["score_std"], count=None)
        scores = standardize_scores(raw, src, stats)
        has_eos = contains_eos(responses, mask, eos_id)
        if penalty is not None:
            scores = apply_missing_eos_penalty(scores, has_eos, penalty, mode)
        # --- rewards, GAE, whitening ----------------------------------------------------
        kl_t = per_token_kl(logp, ref_logp, mask, c.kl_estimator)
        rewards, non_score = per_token_rewards(scores, kl_t, mask, state["beta"])
        if c.whiten_rewards:
            rewards = masked_whiten(rewards, mask, shift_mean=False)
        adv, returns = gae(rewards, values, mask, c.gamma, c.lam)
        adv = masked_whiten(adv, mask)
        seq_kl = sequence_kl(kl_t, mask)

        out = {"prompts": prompts, "responses": responses, "response_mask": mask.astype(jnp.int32),
               "source_ids": src, "grader_scores": g, "logprobs": logp, "ref_logprobs": ref_logp,
               "values": values, "rm_scores": rm, "raw_scores": raw, "scores": scores, "kl": seq_kl,
               "rewards": rewards, "advantages": adv, "returns": returns, "has_eos": has_eos}
        non_score_seq = jnp.sum(non_score, axis=-1)
        row_adv = masked_mean(adv, mask, axis=-1)
        g_src = per_source_mean(g0, src, num_sources, valid=g_ok)[0]
        metrics = {
            "objective/kl": jnp.mean(seq_kl),
            "objective/entropy": jnp.mean(jnp.sum(ent, axis=-1)),
            "objective/non_score_reward": jnp.mean(non_score_seq),
            "objective/rlhf_reward": jnp.mean(non_score_seq) + jnp.mean(scores),
            "objective/scores": jnp.mean(scores),
            "objective/raw_scores": jnp.mean(raw),
            "objective/kl_coef": jnp.asarray(state["beta"], jnp.float32),
            "val/num_eos_tokens": jnp.sum(has_eos.astype(jnp.int32)),
            "val/response_length": jnp.mean(jnp.sum(mask, axis=-1).astype(jnp.float32)),
            "val/values": masked_mean(values, mask),
            "tokens/response": masked_count(mask),
            "tokens/sequence": masked_count(mask) + jnp.sum(prompts != pad_id).astype(jnp.float32),
            # per source [S]: expanded to scores/<name> etc. by `expand_source_metrics`
            "by_source/scores": per_source_mean(raw, src, num_sources)[0],
            "by_source/advantage": per_source_mean(row_adv, src, num_sources)[0],
            "by_source/reward_model": per_source_mean(rm, src, num_sources)[0],
            "by_source/grader": g_src,
            "by_source/count": per_source_mean(raw, src, num_sources)[1],
        }
        return out, metrics

    needs_grader = any(s in ("grader", "sum") for s in c.source_scores)
    return Rollout(jax.jit(generate_step), jax.jit(score_step), needs_grader)


def expand_source_metrics(metrics: dict, source_names) -> dict:
    """Host side: by_source/<what> [S] -> scores/<name>, advantage/<name>, ... (scalars).

    scores/<name> is the mean raw (unstandardised) score of the source; advantage/<name>
    the mean whitened advantage of its rows (the effective weight of that data).
    """
    out = {}
    for k, v in metrics.items():
        if k.startswith("by_source/"):
            what = k.split("/", 1)[1]
            v = np.asarray(v)
            for i, name in enumerate(source_names):
                out[f"{what}/{name}"] = float(v[i])
        else:
            out[k] = v
    return out


# =========================================================================== update

def make_update(c, *, policy_graphdef, critic_graphdef, tx_policy, tx_critic, pad_id: int,
                lr_policy: Callable | None = None, lr_critic: Callable | None = None,
                state_shardings: Any = None):
    """update(state, batch, key) -> (state, metrics), jitted, donating the state.

    num_ppo_epochs x num_minibatches optimizer steps, each accumulating micro_batches
    gradients (nested lax.scans); a fresh permutation of the rollout rows each epoch
    (key folded with the step and the epoch). The loss of a minibatch is the token-level
    masked mean over the whole minibatch (micro-batches are weighted by their token
    count, so accumulation is exact). A minibatch step with a non-finite loss or gradient
    norm is skipped (parameters and optimizer states unchanged) and counted in
    `nonfinite_steps`; `finite` is False if any was. Then beta moves by the KL controller.

    Metrics: TRL's averages over epochs and minibatches (policy/approxkl_avg,
    policy/clipfrac_avg, policy/entropy_avg, loss/policy_avg, loss/value_avg,
    val/clipfrac_avg, val/ratio, val/ratio_var), lr, critic_lr, grad norms, and the
    per-minibatch traces mb/* of shape [epochs, minibatches].
    """
    e_, m_, k_ = c.num_ppo_epochs, c.num_minibatches, c.micro_batches
    temperature = float(c.temperature)
    score = functools.partial(score_sequences, pad_id=pad_id)
    clip_kw = dict(eps=c.cliprange, eps_low=c.cliprange_low, eps_high=c.cliprange_high, dual_clip=c.dual_clip)
    vf_coef, ent_coef = float(c.vf_coef), float(c.entropy_coef)

    def loss_fn(params, x, weight):
        policy, critic = params
        mask = x["response_mask"] > 0
        logp, ent = score(policy_graphdef, policy, x["prompts"], x["responses"], mask, temperature, "lm",
                          with_entropy=True)
        values = score(critic_graphdef, critic, x["prompts"], x["responses"], mask, kind="value")
        pg, pm = policy_loss(logp, x["logprobs"], x["advantages"], mask, **clip_kw)
        vf, vm = value_loss(values, x["values"], x["returns"], mask, cliprange_value=c.cliprange_value)
        ent_mean = masked_mean(ent, mask)
        # Without a bonus the entropy is a metric: no backward pass through [B, N, V] for it
        # (XLA keeps 0 * x, so a zero coefficient alone would still pay for the gradient).
        bonus = ent_coef * ent_mean if ent_coef else 0.0
        loss = pg + vf_coef * vf - bonus
        metrics = {"loss": loss, "pg_loss": pm["pg_loss"], "vf_loss": vm["vf_loss"], "entropy": ent_mean,
                   "approxkl": pm["approxkl"], "clipfrac": pm["clipfrac"], "dual_clipfrac": pm["dual_clipfrac"],
                   "ratio_mean": pm["ratio_mean"], "ratio_var": pm["ratio_var"], "vf_clipfrac": vm["vf_clipfrac"]}
        return loss * weight, jax.tree.map(lambda v: v * weight, metrics)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def minibatch(carry, mbx):
        """One optimizer step on a minibatch whose leaves are [K, rows / K, ...]."""
        params = (carry["policy"], carry["critic"])
        n_total = jnp.maximum(masked_count(mbx["response_mask"]), 1.0)

        def micro(x):
            w = masked_count(x["response_mask"]) / n_total
            (_, met), g = grad_fn(params, x, w)
            return g, met

        grads, met = micro(jax.tree.map(lambda a: a[0], mbx))
        if k_ > 1:
            def body(acc, x):
                return jax.tree.map(jnp.add, acc, micro(x)), None
            (grads, met), _ = jax.lax.scan(body, (grads, met), jax.tree.map(lambda a: a[1:], mbx))
        g_pol, g_cri = grads
        gn_p, gn_c = optax.tree.norm(g_pol), optax.tree.norm(g_cri)
        up_p, opt_p = tx_policy.update(g_pol, carry["policy_opt"], carry["policy"])
        up_c, opt_c = tx_critic.update(g_cri, carry["critic_opt"], carry["critic"])
        new = {"policy": optax.apply_updates(carry["policy"], up_p), "policy_opt": opt_p,
               "critic": optax.apply_updates(carry["critic"], up_c), "critic_opt": opt_c}
        finite = jnp.isfinite(met["loss"]) & jnp.isfinite(gn_p) & jnp.isfinite(gn_c)
        new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, carry)
        return new, dict(met, grad_norm_policy=gn_p, grad_norm_critic=gn_c, finite=finite)

    def update(state, batch, key):
        rows = {k: batch[k] for k in UPDATE_KEYS}
        b = rows["responses"].shape[0]
        if b % (m_ * k_):
            raise ValueError(f"rollout batch of {b} rows does not split into {m_} minibatches x {k_} micro-batches")
        per_micro = b // (m_ * k_)
        step = jnp.asarray(state["step"], jnp.int32)
        key = jax.random.fold_in(key, step)

        def epoch(carry, e):
            perm = jax.random.permutation(jax.random.fold_in(key, e), b)
            shuffled = jax.tree.map(lambda a: a[perm].reshape(m_, k_, per_micro, *a.shape[1:]), rows)
            return jax.lax.scan(minibatch, carry, shuffled)

        carry0 = {k: state[k] for k in ("policy", "policy_opt", "critic", "critic_opt")}
        carry, mets = jax.lax.scan(epoch, carry0, jnp.arange(e_))
        kl_now = jnp.mean(batch["kl"])
        beta = kl_controller_update(state["beta"], kl_now, b, adaptive=c.adaptive_kl,
                                    target=c.target_kl, horizon=c.kl_horizon)
        beta = jnp.where(jnp.isfinite(beta), beta, state["beta"]).astype(jnp.float32)
        new_state = dict(state, **carry, beta=beta, step=step + 1)
        avg = lambda k: jnp.mean(mets[k])  # noqa: E731
        opt_step = step * (e_ * m_)
        metrics = {
            "policy/approxkl_avg": avg("approxkl"), "policy/clipfrac_avg": avg("clipfrac"),
            "policy/entropy_avg": avg("entropy"), "policy/dual_clipfrac_avg": avg("dual_clipfrac"),
            "loss/policy_avg": avg("pg_loss"), "loss/value_avg": avg("vf_loss"), "loss/total_avg": avg("loss"),
            "val/clipfrac_avg": avg("vf_clipfrac"), "val/ratio": avg("ratio_mean"),
            "val/ratio_var": avg("ratio_var"),
            "grad_norm/policy": avg("grad_norm_policy"), "grad_norm/critic": avg("grad_norm_critic"),
            "objective/kl_coef_next": beta,
            "nonfinite_steps": jnp.sum(~mets["finite"]).astype(jnp.int32), "finite": jnp.all(mets["finite"]),
            "mb/approxkl": mets["approxkl"], "mb/clipfrac": mets["clipfrac"], "mb/ratio": mets["ratio_mean"],
            "mb/pg_loss": mets["pg_loss"],
        }
        if lr_policy is not None:
            metrics["lr"] = jnp.asarray(lr_policy(opt_step), jnp.float32)
        if lr_critic is not None:
            metrics["critic_lr"] = jnp.asarray(lr_critic(opt_step), jnp.float32)
        return new_state, metrics

    return _StateJit(update, state_shardings)


class _StateJit:
    """jax.jit(fn, donate_argnums=0) whose output state keeps the input state's shardings
    (taken from `state_shardings`, or from the first state it sees), so the state that
    comes out can go straight back in without a new compilation."""

    def __init__(self, fn, state_shardings=None):
        self.fn, self.state_shardings, self.jitted = fn, state_shardings, None

    def _build(self, state):
        sh = self.state_shardings
        if sh is None:
            sh = jax.tree.map(lambda x: x.sharding, state)
        self.jitted = jax.jit(self.fn, donate_argnums=0, out_shardings=(sh, None))

    def __call__(self, state, *args):
        if self.jitted is None:
            self._build(state)
        return self.jitted(state, *args)

    def lower(self, state, *args):
        if self.jitted is None:
            self._build(state)
        return self.jitted.lower(state, *args)

    def _cache_size(self):
        return 0 if self.jitted is None else self.jitted._cache_size()


# =========================================================================== bundle

class PPO(NamedTuple):
    """Everything a PPO run calls, built once (each jitted step compiles once)."""
    config: Any
    rollout: Rollout
    update: Callable
    tx_policy: Any
    tx_critic: Any
    lr_policy: Callable
    lr_critic: Callable


def make_ppo(c, *, policy_graphdef, critic_graphdef, reward_graphdef, eos_id: int, pad_id: int,
             reference_graphdef=None, state_shardings=None) -> PPO:
    validate_ppo_config(c)
    tx_p, sched_p, tx_c, sched_c = make_optimizers(c)
    rollout = make_rollout(c, policy_graphdef=policy_graphdef, critic_graphdef=critic_graphdef,
                           reward_graphdef=reward_graphdef, eos_id=eos_id, pad_id=pad_id,
                           reference_graphdef=reference_graphdef)
    update = make_update(c, policy_graphdef=policy_graphdef, critic_graphdef=critic_graphdef,
                         tx_policy=tx_p, tx_critic=tx_c, pad_id=pad_id, lr_policy=sched_p,
                         lr_critic=sched_c, state_shardings=state_shardings)
    return PPO(c, rollout, update, tx_p, tx_c, sched_p, sched_c)


def estimate_score_stats(ppo: PPO, state, frozen, batches, grade=None, seed: int = 0,
                         min_std: float = 1e-3) -> ScoreStats:
    """Per-source mean / std of the raw scores of the current (base) policy's own samples.

    `batches` yields loop-style batches ({'prompts', 'source_ids', ...}); compute once,
    save with rewards.score_stats_to_dict, pass to the loop (PPO.md: one scale for all
    sources). `frozen`'s own stats are ignored (raw scores are read).
    """
    num_sources = len(ppo.config.source_names)
    frozen = make_frozen(frozen["reference"], frozen["reward_model"], None, num_sources)
    raw, src = [], []
    base = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), 0x7FFFFFFF - seed)  # apart from iterations
    for i, batch in enumerate(batches):
        key = jax.random.fold_in(base, i)
        out, _ = ppo.rollout(state, frozen, jnp.asarray(batch["prompts"]), batch["source_ids"], key,
                             grade, batch)
        raw.append(np.asarray(out["raw_scores"]))
        src.append(np.asarray(out["source_ids"]))
    if not raw:
        raise ValueError("estimate_score_stats: no batches")
    return compute_score_stats(jnp.asarray(np.concatenate(raw)), jnp.asarray(np.concatenate(src)),
                               num_sources, min_std=min_std)
