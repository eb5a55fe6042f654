"""Batched sampling: one jitted prefill, then a `lax.while_loop` decode over a
fixed-size per-layer KV cache. Prompts are left-padded with pad_id (pad != EOS).

Returned per-token log-probabilities are of the full distribution at the sampling
temperature (not the top-k / top-p truncated one), the convention PPO needs.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from beneficial.models.transformer import init_cache, positions_from_mask


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int
    eos_id: int
    pad_id: int
    temperature: float = 1.0
    top_k: int = 0        # 0 = off
    top_p: float = 1.0    # 1.0 = off
    greedy: bool = False

    def __post_init__(self):
        if self.temperature <= 0 and not self.greedy:
            raise ValueError(f"sampling.temperature={self.temperature} must be > 0 (or set greedy=True)")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"sampling.top_p={self.top_p} must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError(f"sampling.top_k={self.top_k} must be >= 0 (0 disables it)")
        if self.pad_id == self.eos_id:
            raise ValueError(f"pad_id == eos_id == {self.pad_id}: padding must be distinct from EOS")


def filter_logits(logits, top_k: int, top_p: float):
    """Mask logits outside the top-k and outside the top-p nucleus with -inf."""
    if top_k:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p < 1.0:
        sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # mass strictly above each token
        cutoff = jnp.min(jnp.where(before < top_p, sorted_logits, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < cutoff, -jnp.inf, logits)
    return logits


def _choose(logits, key, sc: SamplingConfig):
    if sc.greedy:
        return jnp.argmax(logits, axis=-1)
    scaled = filter_logits(logits / sc.temperature, sc.top_k, sc.top_p)
    if key.ndim == 1:  # one key per row: a row's sample does not depend on its batch-mates
        return jax.vmap(jax.random.categorical)(key, scaled)
    return jax.random.categorical(key, scaled, axis=-1)


def generate(graphdef, state, prompt, key, sc: SamplingConfig, return_logits: bool = False):
    """Sample up to sc.max_new_tokens after each left-padded prompt row.

    key: one key for the batch, or [B] keys (one per row: a row's tokens then depend only
    on its prompt and its key, not on the other rows; evaluations use this so that a
    resumed run samples exactly what an uninterrupted one would).
    Returns {'tokens': [B, N], 'mask': [B, N] (1 up to and including the first EOS),
    'logprobs': [B, N], 'steps': scalar decode steps run} and 'logits' [B, N, V] if asked.
    """
    model = nnx.merge(graphdef, state)
    b, p = prompt.shape
    n = sc.max_new_tokens
    prompt_mask = (prompt != sc.pad_id).astype(jnp.int32)
    positions = positions_from_mask(prompt_mask)
    cache = init_cache(model.cfg, b, p + n)
    hidden, cache = model(prompt, positions, prompt_mask, cache, 0)
    first_logits = model.logits(hidden[:, -1])
    temp = 1.0 if sc.greedy else sc.temperature

    carry = dict(
        i=jnp.int32(0), tokens=jnp.full((b, n), sc.pad_id, jnp.int32),
        mask=jnp.zeros((b, n), jnp.int32), logprobs=jnp.zeros((b, n), jnp.float32),
        done=jnp.zeros((b,), bool), logits=first_logits, cache=cache,
        pos=positions[:, -1] + 1, key=key)
    if return_logits:
        carry["all_logits"] = jnp.zeros((b, n, first_logits.shape[-1]), jnp.float32)

    def cond(c):
        return (c["i"] < n) & ~jnp.all(c["done"])

    def body(c):
        i = c["i"]
        if c["key"].ndim == 1:  # per-row keys: step i of row r uses fold_in(key[r], i)
            key, sub = c["key"], jax.vmap(lambda k: jax.random.fold_in(k, i))(c["key"])
        else:
            key, sub = jax.random.split(c["key"])
        tok = _choose(c["logits"], sub, sc)
        lp = jnp.take_along_axis(jax.nn.log_softmax(c["logits"] / temp, axis=-1), tok[:, None], axis=-1)[:, 0]
        live = ~c["done"]
        tok = jnp.where(live, tok, sc.pad_id).astype(jnp.int32)
        out = dict(c, key=key, i=i + 1, done=c["done"] | (tok == sc.eos_id), pos=c["pos"] + 1)
        out["tokens"] = jax.lax.dynamic_update_slice(c["tokens"], tok[:, None], (0, i))
        out["mask"] = jax.lax.dynamic_update_slice(c["mask"], live.astype(jnp.int32)[:, None], (0, i))
        out["logprobs"] = jax.lax.dynamic_update_slice(c["logprobs"], jnp.where(live, lp, 0.0)[:, None], (0, i))
        if return_logits:
            out["all_logits"] = jax.lax.dynamic_update_slice(c["all_logits"], c["logits"][:, None], (0, i, 0))
        hidden, out["cache"] = model(tok[:, None], c["pos"][:, None], jnp.ones((b, 1), jnp.int32), c["cache"], p + i)
        out["logits"] = model.logits(hidden[:, 0])
        return out

    c = jax.lax.while_loop(cond, body, carry)
    result = {"tokens": c["tokens"], "mask": c["mask"], "logprobs": c["logprobs"], "steps": c["i"]}
    if return_logits:
        result["logits"] = c["all_logits"]
    return result


def make_generate(graphdef, sc: SamplingConfig, return_logits: bool = False):
    """A jitted generate(state, prompt, key): params are arguments, so new weights never recompile."""
    return jax.jit(functools.partial(generate, graphdef, sc=sc, return_logits=return_logits))
