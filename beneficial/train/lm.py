"""The supervised trainer: masked next-token loss, a jitted sharded train step with
gradient accumulation, and a resumable loop (Orbax, metrics, tqdm, held-out loss).

Used for pretraining the base LM, SFT on chat data, and adversarial fine-tuning; the
reward model swaps in its own loss (beneficial/train/reward.py) and reuses the loop.
"""
import dataclasses
import logging
import signal
import time
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from beneficial import checkpoints
from beneficial.metrics import MetricsWriter

log = logging.getLogger("beneficial")


class NonFiniteError(FloatingPointError):
    pass


def next_token_loss(graphdef, params, batch):
    """Sum of masked next-token NLL and the number of target tokens.

    Token t is predicted from position t-1, counted when loss_mask[t] = 1 and t-1 is in
    the same packed document (segment), so no document learns from its neighbour.
    """
    model = nnx.merge(graphdef, params)
    tokens, seg = batch["tokens"], batch["segment_ids"]
    hidden, _ = model(tokens, batch["positions"], seg)
    logits = model.logits(hidden[:, :-1])
    targets = tokens[:, 1:]
    weight = (batch["loss_mask"][:, 1:] * (seg[:, 1:] == seg[:, :-1]) * (seg[:, 1:] > 0)).astype(jnp.float32)
    logz = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    nll = jnp.where(weight > 0, logz - target_logit, 0.0)
    return jnp.sum(nll * weight), jnp.sum(weight)


def make_train_step(graphdef, tx, loss_fn: Callable = next_token_loss, accum_steps: int = 1):
    """step(state, batch) -> (state, metrics). state = {'params', 'opt', 'step', 'rng'}.

    The batch's leading axis splits into `accum_steps` micro-batches scanned in order;
    the loss is the token-weighted mean over the whole batch. A non-finite loss or
    gradient norm leaves the state unchanged and raises on the host (see train_loop).
    """
    def micro_grads(params, mb):
        (loss_sum, count), grads = jax.value_and_grad(
            lambda p: loss_fn(graphdef, p, mb), has_aux=True)(params)
        return loss_sum, count, grads

    def step(state, batch):
        params = state["params"]
        if accum_steps == 1:
            loss_sum, count, grads = micro_grads(params, batch)
        else:
            split = jax.tree.map(lambda x: x.reshape(accum_steps, -1, *x.shape[1:]), batch)

            def body(carry, mb):
                ls, c, g = micro_grads(params, mb)
                return jax.tree.map(jnp.add, carry, (ls, c, g)), None

            zeros = (jnp.float32(0), jnp.float32(0), jax.tree.map(jnp.zeros_like, params))
            (loss_sum, count, grads), _ = jax.lax.scan(body, zeros, split)
        denom = jnp.maximum(count, 1.0)
        grads = jax.tree.map(lambda g: g / denom, grads)
        loss = loss_sum / denom
        gnorm = optax_global_norm(grads)
        updates, opt = tx.update(grads, state["opt"], params)
        new_params = jax.tree.map(lambda p, u: p + u, params, updates)
        finite = jnp.isfinite(loss) & jnp.isfinite(gnorm)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
        new_state = dict(state, params=keep(new_params, params), opt=keep(opt, state["opt"]),
                         step=state["step"] + 1)
        return new_state, {"loss": loss, "grad_norm": gnorm, "tokens": count, "finite": finite}

    return step


def optax_global_norm(tree):
    return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


def make_eval_step(graphdef, loss_fn: Callable = next_token_loss):
    def step(params, batch):
        return loss_fn(graphdef, params, batch)
    return step


@dataclasses.dataclass
class LoopConfig:
    total_steps: int
    log_every: int = 50
    eval_every: int = 500
    checkpoint_every: int = 500
    eval_batches: int = 4
    desc: str = "train"


class _Preemption:
    """Turn SIGTERM into a flag the loop checks, so preemption writes a checkpoint."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def _handle(self, *_):
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


class Preempted(Exception):
    pass


def train_loop(*, state, train_step, data_iter, workdir, loop: LoopConfig,
               eval_step=None, eval_batches: Callable[[], Iterator] | None = None,
               batch_sharding=None, extra_metrics: Callable[[dict], dict] | None = None,
               eval_extra: Callable[[Any], dict] | None = None):
    """Run (or resume) a training loop in `workdir`; returns the final state.

    `state` is the freshly initialised state (its shardings are the restore target);
    `data_iter` a checkpointable Grain iterator (get_state/set_state); `eval_extra(params)`
    returns more metrics to log at every evaluation (it must not change anything).
    """
    ckpt = checkpoints.Checkpointer(workdir / "checkpoints", max_to_keep=2)
    start = ckpt.latest_step()
    if start is not None:
        state, data_state = ckpt.restore(checkpoints.abstract_with_shardings(state))
        if data_state is not None:
            data_iter.set_state(data_state)
        log.info("%s: resumed from step %d in %s", loop.desc, start, workdir)
    start = start or 0
    writer = MetricsWriter(workdir, resume_step=start)
    jstep = jax.jit(train_step, donate_argnums=0)
    jeval = jax.jit(eval_step) if eval_step is not None else None
    if batch_sharding is not None:  # a function of rank: [batch, ...] arrays split over the data axes
        put = lambda b: jax.tree.map(lambda x: jax.device_put(x, batch_sharding(np.ndim(x))), b)  # noqa: E731
    else:
        put = lambda b: b  # noqa: E731
    pending, t0 = [], time.perf_counter()
    try:
        with _Preemption() as pre, tqdm(total=loop.total_steps, initial=start, desc=loop.desc,
                                         dynamic_ncols=True, disable=jax.process_index() != 0) as bar:
            for step in range(start, loop.total_steps):
                state, metrics = jstep(state, put(next(data_iter)))
                pending.append(metrics)
                done = step + 1
                if done % loop.log_every == 0 or done == loop.total_steps:
                    rows = jax.device_get(pending)
                    pending = []
                    if not all(bool(r["finite"]) for r in rows):
                        bad = next(i for i, r in enumerate(rows) if not bool(r["finite"]))
                        raise NonFiniteError(
                            f"{loop.desc}: non-finite loss or gradient norm at step {done - len(rows) + bad + 1} "
                            f"(loss={float(rows[bad]['loss'])}, grad_norm={float(rows[bad]['grad_norm'])}); the update "
                            f"was skipped and no checkpoint written. Lower the learning rate or check the data.")
                    tokens = sum(float(r["tokens"]) for r in rows)
                    dt = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    out = {"loss": float(np.mean([r["loss"] for r in rows])),
                           "grad_norm": float(np.mean([r["grad_norm"] for r in rows])),
                           "perf/target_tokens_per_s": tokens / max(dt, 1e-9)}
                    if extra_metrics is not None:
                        out.update(extra_metrics(state))
                    writer.write(done, out)
                    bar.set_postfix(loss=f"{out['loss']:.3f}")
                if jeval is not None and (done % loop.eval_every == 0 or done == loop.total_steps):
                    sums = [jax.device_get(jeval(state["params"], put(b))) for b in eval_batches()]
                    heldout = float(sum(s[0] for s in sums) / max(sum(s[1] for s in sums), 1.0))
                    writer.write(done, {"heldout_loss": heldout})
                    if eval_extra is not None:
                        writer.write(done, eval_extra(state["params"]))
                if done % loop.checkpoint_every == 0 or done == loop.total_steps or pre.requested:
                    ckpt.save(done, state, data_iter.get_state(), force=True)
                bar.update(1)
                if pre.requested:
                    ckpt.wait()
                    raise Preempted(f"{loop.desc}: SIGTERM at step {done}; checkpoint written")
    finally:
        ckpt.close()
        writer.close()
    return state


def init_train_state(params, tx, seed: int):
    """{'params', 'opt', 'step', 'rng'}; optimizer state is built under jit so it inherits
    the parameters' shardings."""
    opt = jax.jit(tx.init)(params)
    return {"params": params, "opt": opt, "step": jnp.int32(0), "rng": jax.random.key_data(jax.random.key(seed))}
