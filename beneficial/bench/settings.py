"""The settings dict every benchmarked framework reads, the cells, and shared prompts.

A settings dict is plain JSON (it crosses process boundaries to peers run in their own
virtual environments). Keys:

  model     hidden, layers, heads, kv_heads, head_dim, intermediate, vocab, tie_embeddings
  episode   prompt_len (padded length), prompt_min_len (shortest real prompt), response_len
  PPO       episodes_per_iteration, num_ppo_epochs, num_minibatches
  runtime   dtype ('float32' | 'bfloat16'), threads, seed
  ours only attn_query_blocks (the model field of that name; peers ignore it)

Architecture: a Llama decoder (RMSNorm, SwiGLU MLP, RoPE, no biases). The policy and the
reference are LMs; value and reward models are the same trunk with a hidden -> 1 head.
"""
from __future__ import annotations

import copy

import numpy as np

# Token ids shared by every framework's tokenizer: pad != eos, ids >= NUM_SPECIAL are words.
PAD_ID, EOS_ID, BOS_ID, UNK_ID = 0, 1, 2, 3
NUM_SPECIAL = 4

BASE = dict(
    hidden=128, layers=4, heads=4, kv_heads=4, head_dim=None, intermediate=512, vocab=2048,
    tie_embeddings=False,
    prompt_len=32, prompt_min_len=16, response_len=32,
    episodes_per_iteration=64, num_ppo_epochs=4, num_minibatches=4,
    dtype="float32", threads=2, seed=0, attn_query_blocks=4,
)

# The model sizes of issue 9: ~1.5M (hidden 128 / 4 layers / vocab 2048) and
# ~27M (hidden 512 / 6 layers / vocab 8192) parameters per model.
MODELS = {
    "1.5M": dict(hidden=128, layers=4, heads=4, kv_heads=4, intermediate=512, vocab=2048),
    "27M": dict(hidden=512, layers=6, heads=8, kv_heads=8, intermediate=1376, vocab=8192),
}
RESPONSES = (32, 128)

KEYS = frozenset(BASE)


def make_settings(**overrides) -> dict:
    """BASE with overrides; head_dim filled in; unknown keys and inexact batch splits rejected."""
    unknown = set(overrides) - KEYS
    if unknown:
        raise ValueError(f"unknown bench setting(s) {sorted(unknown)}; valid: {sorted(KEYS)}")
    s = copy.deepcopy(BASE)
    s.update(overrides)
    if s["head_dim"] is None:
        if s["hidden"] % s["heads"]:
            raise ValueError(f"hidden={s['hidden']} is not a multiple of heads={s['heads']}")
        s["head_dim"] = s["hidden"] // s["heads"]
    if s["heads"] % s["kv_heads"]:
        raise ValueError(f"heads={s['heads']} is not a multiple of kv_heads={s['kv_heads']}")
    if s["episodes_per_iteration"] % s["num_minibatches"]:
        raise ValueError("episodes_per_iteration must be a multiple of num_minibatches")
    if not 1 <= s["prompt_min_len"] <= s["prompt_len"]:
        raise ValueError("need 1 <= prompt_min_len <= prompt_len")
    if s["dtype"] not in ("float32", "bfloat16"):
        raise ValueError(f"dtype={s['dtype']!r}: 'float32' or 'bfloat16'")
    return s


def cells(models=None, responses=None, **overrides) -> dict[str, dict]:
    """Named benchmark cells {'1.5M/r32': settings, ...}: model sizes x response lengths."""
    out = {}
    for m in models or MODELS:
        for r in responses or RESPONSES:
            out[f"{m}/r{r}"] = make_settings(**{**MODELS[m], "response_len": r, **overrides})
    return out


def make_prompts(settings: dict, count: int | None = None, seed: int | None = None) -> np.ndarray:
    """Left-padded random prompts, int32 [count, prompt_len]; identical for every framework.

    Real lengths are uniform in [prompt_min_len, prompt_len]; tokens are uniform over the
    non-special ids; each prompt starts with BOS.
    """
    count = settings["episodes_per_iteration"] if count is None else count
    rng = np.random.default_rng(settings["seed"] if seed is None else seed)
    p = settings["prompt_len"]
    lengths = rng.integers(settings["prompt_min_len"], p + 1, size=count)
    ids = rng.integers(NUM_SPECIAL, settings["vocab"], size=(count, p)).astype(np.int32)
    pos = np.arange(p)[None, :]
    ids[pos < (p - lengths)[:, None]] = PAD_ID
    ids[np.arange(count), p - lengths] = BOS_ID
    return ids


def param_counts(settings: dict) -> dict:
    """Parameter counts of the Llama models the settings describe (HF layout, no biases)."""
    s = settings
    h, q, kv, ff, v = s["hidden"], s["heads"] * s["head_dim"], s["kv_heads"] * s["head_dim"], \
        s["intermediate"], s["vocab"]
    layer = 2 * h * q + 2 * h * kv + 3 * h * ff + 2 * h  # q, o, k, v, gate/up/down, 2 norms
    trunk = v * h + s["layers"] * layer + h              # embedding, layers, final norm
    lm = trunk + (0 if s["tie_embeddings"] else v * h)
    scalar = trunk + h                                   # value / reward: hidden -> 1 score
    return dict(policy=lm, ref=lm, value=scalar, reward=scalar, trainable=lm + scalar,
                embedding=v * h, per_layer=layer)
