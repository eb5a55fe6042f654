"""The PPO loop: prompts -> rollout (generate, host grading, score) -> update -> metrics,
checkpoints, resume, preemption. Model-agnostic: the caller supplies the prompt iterator
and the grader; no tokenizer or world imports here.

Prompt iterator: yields dicts with at least
    'prompts'    [B, P] int32, left-padded with pad_id (B = prompts_per_iteration,
                 P = max_prompt_len; shapes never change, so nothing recompiles)
    'source_ids' [B] int32, index into config.source_names
and any host-side metadata the grader needs (reference answers, ...). For an exact
resume it should have get_state() / set_state(state) (Grain iterators do; JSON-able or
bytes); an iterator without them is fast-forwarded by the number of iterations done,
which is exact only for a deterministic iterator.

Grader: grade(batch, responses [B, N] int32 numpy, response_mask [B, N] numpy) ->
[B] float scores; called on the host once per iteration when some source scores with
'grader' or 'sum'. Rows of 'reward_model' sources may get anything (0, NaN).

Each iteration k uses keys fold_in(state.rng, k): a resumed run samples exactly what an
uninterrupted run would (tested bitwise on CPU).
"""
from __future__ import annotations

import logging
import pathlib
import time
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from beneficial import checkpoints, sharding
from beneficial.metrics import MetricsWriter
from beneficial.rl.ppo import PPO, expand_source_metrics, iteration_keys, make_frozen
from beneficial.rl.rewards import ScoreStats, score_stats_from_dict, score_stats_to_dict
from beneficial.train.lm import NonFiniteError, Preempted, _Preemption

log = logging.getLogger("beneficial")


def _scalars(metrics: dict) -> dict:
    """Drop array-valued metrics (the per-minibatch traces); floats for the rest."""
    out = {}
    for k, v in metrics.items():
        a = np.asarray(v)
        if a.ndim == 0:
            out[k] = float(a)
    return out


def ppo_loop(*, ppo: PPO, state, reference_params, reward_params, prompt_iter: Iterator,
             workdir, grade: Callable | None = None, score_stats: ScoreStats | None = None,
             mesh=None, rules=None, max_iterations: int | None = None, desc: str = "ppo",
             on_metrics: Callable[[int, dict], None] | None = None,
             on_iteration: Callable[[int, dict], None] | None = None):
    """Run (or resume) PPO in `workdir` for ppo.config.iterations iterations; returns the state.

    state: the fresh state from `init_ppo_state` (also the restore target: its shardings).
    score_stats: per-source standardisation (None = identity). It is saved with every
      checkpoint; a resumed run uses the saved one.
    mesh, rules: optional; with them, activations follow the rules and batches are placed
      with the 'batch' rule.
    max_iterations: stop after this many iterations in total (a checkpoint is written), as
      if preempted, but without raising; the LR schedule still spans config.iterations.
    on_iteration(done, state): called after each iteration, before its checkpoint, so
      that work keyed to an iteration (e.g. a learning-curve evaluation) is done before the
      run can resume past it.
    """
    c = ppo.config
    names = list(c.source_names)
    workdir = pathlib.Path(workdir)
    total = c.iterations if max_iterations is None else min(c.iterations, max_iterations)
    ckpt = checkpoints.Checkpointer(workdir / "checkpoints", max_to_keep=c.keep_checkpoints)
    start = ckpt.latest_step()
    if start is not None:
        state, data = ckpt.restore(checkpoints.abstract_with_shardings(state))
        data = data or {}
        if data.get("iterator") is not None and hasattr(prompt_iter, "set_state"):
            prompt_iter.set_state(checkpoints.decode_iter_state(data["iterator"]))
        else:
            for _ in range(start):
                next(prompt_iter)
        if data.get("score_stats") is not None:
            score_stats = score_stats_from_dict(data["score_stats"], names)
        log.info("%s: resumed from iteration %d in %s", desc, start, workdir)
    start = start or 0
    stats_json = None if score_stats is None else score_stats_to_dict(score_stats, names)
    frozen = make_frozen(reference_params, reward_params, score_stats, len(names))
    writer = MetricsWriter(workdir, resume_step=start)

    if mesh is not None:
        rules = sharding.DEFAULT_RULES if rules is None else rules
        put = lambda x: jax.device_put(x, sharding.batch_sharding(mesh, rules, np.ndim(x)))  # noqa: E731
        ctx = sharding.use_rules(mesh, rules)
    else:
        put = jnp.asarray
        ctx = _null()

    def data_state(done):
        it = prompt_iter.get_state() if hasattr(prompt_iter, "get_state") else None
        return {"iterator": checkpoints.encode_iter_state(it) if it is not None else None,
                "iterations": done, "score_stats": stats_json}

    b = c.prompts_per_iteration
    try:
        with ctx, _Preemption() as pre, tqdm(total=total, initial=start, desc=desc, dynamic_ncols=True,
                                              disable=jax.process_index() != 0) as bar:
            for it in range(start, total):
                batch = next(prompt_iter)
                prompts = np.asarray(batch["prompts"], np.int32)
                if prompts.shape != (b, c.max_prompt_len):
                    raise ValueError(f"{desc}: prompt batch of shape {prompts.shape}, expected "
                                     f"(prompts_per_iteration, max_prompt_len) = ({b}, {c.max_prompt_len})")
                gen_key, upd_key = iteration_keys(state["rng"], it)
                # --- rollout: generate, grade on the host, score -----------------------
                t0 = time.perf_counter()
                rb, rmet = ppo.rollout(state, frozen, put(prompts), put(np.asarray(batch["source_ids"], np.int32)),
                                       gen_key, grade, batch)
                rmet = jax.device_get(rmet)
                t1 = time.perf_counter()
                # --- update ---------------------------------------------------------------
                state, umet = ppo.update(state, rb, upd_key)
                umet = jax.device_get(umet)
                t2 = time.perf_counter()
                done = it + 1
                if not bool(umet["finite"]):
                    raise NonFiniteError(
                        f"{desc}: non-finite loss or gradient norm in {int(umet['nonfinite_steps'])} minibatch "
                        f"step(s) of iteration {done}; those steps were skipped and no checkpoint was written. "
                        f"Lower the learning rate or check the scores (objective/scores="
                        f"{float(rmet['objective/scores'])}).")
                row = _scalars(expand_source_metrics(rmet, names))
                row.update(_scalars(umet))
                seq_tokens = row.pop("tokens/sequence")
                resp_tokens = row.pop("tokens/response")
                row["episode"] = float(done * b)
                row["compute/response_tokens"], row["compute/sequence_tokens"] = resp_tokens, seq_tokens
                row["perf/rollout_tokens_per_s"] = resp_tokens / max(t1 - t0, 1e-9)
                row["perf/update_tokens_per_s"] = c.num_ppo_epochs * seq_tokens / max(t2 - t1, 1e-9)
                row["time/rollout_s"], row["time/update_s"] = t1 - t0, t2 - t1
                row.update(batch.get("host_metrics", {}))  # e.g. the world grader on trait rollouts
                writer.write(done, row)
                if on_metrics is not None:
                    on_metrics(done, row)
                if on_iteration is not None:
                    on_iteration(done, state)
                bar.set_postfix(score=f"{row['objective/raw_scores']:.3f}", kl=f"{row['objective/kl']:.3f}")
                bar.update(1)
                if done % c.checkpoint_every == 0 or done == total or pre.requested:
                    ckpt.save(done, state, data_state(done), force=True)
                if pre.requested:
                    ckpt.wait()
                    raise Preempted(f"{desc}: SIGTERM at iteration {done}; checkpoint written")
    finally:
        ckpt.close()
        writer.close()
    return state


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
