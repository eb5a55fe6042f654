"""A decoder-only transformer whose switches cover Llama 3, Qwen2, Gemma and Gemma 2.

Shapes: B batch, T query length, S key length (= cache size when decoding), D model,
H query heads, K kv heads, G = H // K, E head dim, F MLP width, V vocabulary.

Every Param carries `axes` metadata (logical axis names) that beneficial.sharding maps
onto the mesh; the main activations are constrained by the same names.

Masking is by segment ids and slots, so one code path serves packed pretraining
(segments 1, 2, ... with positions that reset), left-padded prompts (segment 0 on the
padding) and cached decoding (keys live in cache slots).
"""
import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from beneficial.sharding import constrain

NEG_INF = -1e30  # finite, so a fully masked row (padding) softmaxes to uniform, never NaN


def _normal(rngs, shape, std, dtype):
    return jax.random.normal(rngs.params(), shape, jnp.float32).astype(dtype) * std


class RMSNorm(nnx.Module):
    def __init__(self, dim, cfg):
        self.eps, self.plus_one = cfg.norm_eps, cfg.norm_plus_one
        init = jnp.zeros if cfg.norm_plus_one else jnp.ones  # Gemma scales by (1 + w)
        self.scale = nnx.Param(init((dim,), cfg.param_dtype), axes=("embed",))

    def __call__(self, x):
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        w = self.scale[...].astype(jnp.float32)
        return (y * (1.0 + w if self.plus_one else w)).astype(x.dtype)


def rope_frequencies(cfg) -> jnp.ndarray:
    """Inverse frequencies [E/2], with Llama 3's wavelength-dependent scaling if configured."""
    e = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (jnp.arange(0, e, 2, dtype=jnp.float32) / e))
    rs = cfg.rope_scaling
    if rs is None:
        return inv
    if rs["type"] != "llama3":
        raise ValueError(f"model.rope_scaling.type={rs['type']!r} is unsupported; use 'llama3' or None")
    factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    scaled = jnp.where(wavelen > old / lo, inv / factor, inv)
    smooth = (old / wavelen - lo) / (hi - lo)
    medium = (wavelen >= old / hi) & (wavelen <= old / lo)
    return jnp.where(medium, (1 - smooth) * scaled / factor + smooth * scaled, scaled)


def apply_rope(x, positions, inv_freq):
    """Rotate-half RoPE (the Hugging Face layout). x: [B, T, N, E], positions: [B, T]."""
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, T, E/2]
    cos = jnp.cos(angles)[:, :, None, :]
    sin = jnp.sin(angles)[:, :, None, :]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)


def dense(x, w):
    """x [..., in] @ w [in, out] as one 2-D matmul ([rows, in] @ [in, out]).

    XLA:CPU runs the backward of a 3-D `btd,df` dot much slower than the 2-D matmul
    (launch/bench.py, 1.5M/r128: the PPO update 10.2-10.6 s with 3-D einsums, 6.1-6.5 s
    with this). The reshape is free (contiguous rows) and batch stays the major row
    dimension, so data-parallel sharding carries over."""
    lead = x.shape[:-1]
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(*lead, w.shape[-1])


def softcap(x, cap):
    return x if cap is None else cap * jnp.tanh(x / cap)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def softmax_attend(logits, v, kv: str):
    """softmax(logits) @ v: logits [b, k, g, t, s] (float32), v in layout `kv`; -> [b, t, k, g, e].

    The backward pass uses rowsum(P * dP) = rowsum(dO * O) (the flash-attention identity):
    a reduction over the head dimension instead of over every key. Autodiff of the softmax
    reduced over the [t, s] probabilities, 11% of the PPO update's time on a 2-core CPU
    (BENCHMARKS.md, "Profiling the update")."""
    return _softmax_attend_fwd(logits, v, kv)[0]


def _softmax_attend_fwd(logits, v, kv):
    probs = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum(f"bkgts,{kv}->btkge", probs.astype(v.dtype), v)
    return out, (probs, v, out)


def _softmax_attend_bwd(kv, residuals, d_out):
    probs, v, out = residuals
    d_probs = jnp.einsum(f"btkge,{kv}->bkgts", d_out, v).astype(jnp.float32)
    row = jnp.einsum("btkge,btkge->bkgt", d_out.astype(jnp.float32), out.astype(jnp.float32))
    d_logits = probs * (d_probs - row[..., None])
    d_v = jnp.einsum(f"bkgts,btkge->{kv}", probs.astype(v.dtype), d_out)
    return d_logits, d_v


softmax_attend.defvjp(_softmax_attend_fwd, _softmax_attend_bwd)


class Attention(nnx.Module):
    def __init__(self, cfg, layer: int, rngs: nnx.Rngs):
        d, h, k, e, pd = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.param_dtype
        self.cfg = cfg
        self.q = nnx.Param(_normal(rngs, (d, h, e), d ** -0.5, pd), axes=("embed", "heads", "head_dim"))
        self.k = nnx.Param(_normal(rngs, (d, k, e), d ** -0.5, pd), axes=("embed", "kv_heads", "head_dim"))
        self.v = nnx.Param(_normal(rngs, (d, k, e), d ** -0.5, pd), axes=("embed", "kv_heads", "head_dim"))
        self.o = nnx.Param(_normal(rngs, (h, e, d), (h * e * 2 * cfg.n_layers) ** -0.5, pd),
                           axes=("heads", "head_dim", "embed"))
        if cfg.qkv_bias:
            self.q_bias = nnx.Param(jnp.zeros((h, e), pd), axes=("heads", "head_dim"))
            self.k_bias = nnx.Param(jnp.zeros((k, e), pd), axes=("kv_heads", "head_dim"))
            self.v_bias = nnx.Param(jnp.zeros((k, e), pd), axes=("kv_heads", "head_dim"))
        local = cfg.sliding_window is not None and cfg.sliding_every and layer % cfg.sliding_every == 0
        self.window = cfg.sliding_window if local else None

    def __call__(self, x, positions, mask, inv_freq, kv_cache=None, cache_index=None):
        """x [B,T,D]; mask [B,T,S] (S = T, or the cache size); returns ([B,T,D], new kv)."""
        cfg, dt = self.cfg, x.dtype
        b, t, d = x.shape
        q = dense(x, self.q[...].astype(dt).reshape(d, -1)).reshape(b, t, *self.q.shape[1:])
        k = dense(x, self.k[...].astype(dt).reshape(d, -1)).reshape(b, t, *self.k.shape[1:])
        v = dense(x, self.v[...].astype(dt).reshape(d, -1)).reshape(b, t, *self.v.shape[1:])
        if cfg.qkv_bias:
            q, k, v = q + self.q_bias[...].astype(dt), k + self.k_bias[...].astype(dt), v + self.v_bias[...].astype(dt)
        q = constrain(apply_rope(q, positions, inv_freq), ("batch", "length", "heads", "head_dim"))
        k = constrain(apply_rope(k, positions, inv_freq), ("batch", "length", "kv_heads", "head_dim"))
        h, e = q.shape[2:]
        kh = k.shape[2]
        q = q.reshape(b, t, kh, h // kh, e)
        kv = "bske"
        if kv_cache is not None:
            # Write this chunk into the fixed-size cache and attend over all of it. The cache is
            # heads-major [b, kv_heads, slots, e]: decoding reads all of it every step, and
            # XLA:CPU's dots want the batch dims leading (decode ~30% faster than token-major).
            k = jax.lax.dynamic_update_slice(kv_cache["k"], k.transpose(0, 2, 1, 3).astype(kv_cache["k"].dtype),
                                             (0, 0, cache_index, 0))
            v = jax.lax.dynamic_update_slice(kv_cache["v"], v.transpose(0, 2, 1, 3).astype(kv_cache["v"].dtype),
                                             (0, 0, cache_index, 0))
            kv_cache, kv = {"k": k, "v": v}, "bkse"
        k, v = k.astype(dt), v.astype(dt)
        n = min(cfg.attn_query_blocks, t)
        if kv_cache is None and n > 1:
            # Without a cache, slot = column, so queries in [a, z) never see a key at or after z:
            # each block of queries scores only the keys before its end, skipping most of the
            # masked upper triangle (the [T, T] probabilities are memory-bound on CPUs).
            cuts = [round(i * t / n) for i in range(n + 1)]
            out = jnp.concatenate([self._attend(q[:, a:z], k[:, :z], v[:, :z], mask[:, a:z, :z], kv)
                                   for a, z in zip(cuts[:-1], cuts[1:])], axis=1)
        else:
            out = self._attend(q, k, v, mask, kv)
        out = dense(out.reshape(b, t, h * e), self.o[...].astype(dt).reshape(h * e, -1))
        return out, kv_cache

    def _attend(self, q, k, v, mask, kv):
        """Softmax attention of q [b, t, kv_heads, g, e] over k, v (layout `kv`); mask [b, t, s]."""
        cfg = self.cfg
        scale = (cfg.query_pre_attn_scalar or q.shape[-1]) ** -0.5
        logits = jnp.einsum(f"btkge,{kv}->bkgts", q, k).astype(jnp.float32) * scale
        logits = softcap(logits, cfg.attn_softcap)
        logits = jnp.where(mask[:, None, None], logits, NEG_INF)
        return softmax_attend(logits, v, kv)


class MLP(nnx.Module):
    def __init__(self, cfg, rngs):
        d, f, pd = cfg.d_model, cfg.d_ff, cfg.param_dtype
        self.act = cfg.act
        self.gate = nnx.Param(_normal(rngs, (d, f), d ** -0.5, pd), axes=("embed", "mlp"))
        self.up = nnx.Param(_normal(rngs, (d, f), d ** -0.5, pd), axes=("embed", "mlp"))
        self.down = nnx.Param(_normal(rngs, (f, d), (f * 2 * cfg.n_layers) ** -0.5, pd), axes=("mlp", "embed"))

    def __call__(self, x):
        dt = x.dtype
        g = dense(x, self.gate[...].astype(dt))
        g = jax.nn.silu(g) if self.act == "silu" else jax.nn.gelu(g, approximate=True)
        hidden = constrain(g * dense(x, self.up[...].astype(dt)), ("batch", "length", "mlp"))
        return dense(hidden, self.down[...].astype(dt))


class Block(nnx.Module):
    def __init__(self, cfg, layer, rngs):
        self.attn_norm = RMSNorm(cfg.d_model, cfg)
        self.attn = Attention(cfg, layer, rngs)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg)
        self.mlp = MLP(cfg, rngs)
        if cfg.post_norms:  # Gemma 2
            self.attn_post_norm = RMSNorm(cfg.d_model, cfg)
            self.mlp_post_norm = RMSNorm(cfg.d_model, cfg)
        self.post_norms = cfg.post_norms

    def __call__(self, x, positions, masks, inv_freq, kv_cache=None, cache_index=None):
        mask = masks["global"] if self.attn.window is None else masks["local"]
        h, kv_cache = self.attn(self.attn_norm(x), positions, mask, inv_freq, kv_cache, cache_index)
        x = x + (self.attn_post_norm(h) if self.post_norms else h)
        h = self.mlp(self.mlp_norm(x))
        x = x + (self.mlp_post_norm(h) if self.post_norms else h)
        return constrain(x, ("batch", "length", "embed")), kv_cache


@nnx.remat
def _remat_block(block, x, positions, masks, inv_freq):
    return block(x, positions, masks, inv_freq)


def attention_masks(cfg, q_slots, q_seg, q_pos, k_slots, k_seg, k_pos):
    """Boolean [B, T, S] masks: causal by slot, same segment, real keys; plus a sliding one."""
    causal = k_slots[None, None, :] <= q_slots[None, :, None]
    same = (k_seg[:, None, :] == q_seg[:, :, None]) & (k_seg[:, None, :] != 0)
    glob = causal & same
    masks = {"global": glob}
    if cfg.sliding_window is not None and cfg.sliding_every:
        masks["local"] = glob & (q_pos[:, :, None] - k_pos[:, None, :] < cfg.sliding_window)
    return masks


class Decoder(nnx.Module):
    """Token ids -> hidden states -> LM logits (head='lm') or one scalar per token (head='scalar')."""

    def __init__(self, cfg, rngs: nnx.Rngs, head: str = "lm"):
        if head not in ("lm", "scalar"):
            raise ValueError(f"head={head!r}; use 'lm' or 'scalar'")
        # Frozen (hashable) so that a graphdef can key caches of compiled functions.
        cfg = ml_collections.FrozenConfigDict(cfg)
        self.cfg, self.head = cfg, head
        self.embed = nnx.Param(_normal(rngs, (cfg.vocab_size, cfg.d_model), 1.0 if cfg.embed_scale else 0.02,
                                       cfg.param_dtype), axes=("vocab", "embed"))
        self.blocks = nnx.List([Block(cfg, i, rngs) for i in range(cfg.n_layers)])
        self.final_norm = RMSNorm(cfg.d_model, cfg)
        if head == "lm" and not cfg.tie_embeddings:
            self.lm_head = nnx.Param(_normal(rngs, (cfg.d_model, cfg.vocab_size), cfg.d_model ** -0.5,
                                             cfg.param_dtype), axes=("embed", "vocab"))
        if head == "scalar":
            self.score_head = nnx.Param(jnp.zeros((cfg.d_model, 1), cfg.param_dtype), axes=("embed", "out"))
            self.score_bias = nnx.Param(jnp.zeros((1,), cfg.param_dtype), axes=("out",))

    def __call__(self, tokens, positions, segment_ids, cache=None, cache_index=None):
        """Hidden states [B, T, D] (after the final norm) and the updated cache (or None).

        tokens, positions, segment_ids: [B, T] int32. Without a cache, slot t of the
        sequence is token t. With a cache, the T tokens go to slots cache_index..+T and
        attend to every earlier slot of the same segment.
        """
        cfg = self.cfg
        dt = jnp.dtype(cfg.dtype)
        x = self.embed[...].astype(dt)[tokens]
        if cfg.embed_scale:
            x = x * jnp.asarray(cfg.d_model ** 0.5, dt)
        x = constrain(x, ("batch", "length", "embed"))
        t = tokens.shape[1]
        if cache is None:
            slots = jnp.arange(t)
            masks = attention_masks(cfg, slots, segment_ids, positions, slots, segment_ids, positions)
        else:
            k_seg = jax.lax.dynamic_update_slice(cache["seg"], segment_ids, (0, cache_index))
            k_pos = jax.lax.dynamic_update_slice(cache["pos"], positions, (0, cache_index))
            masks = attention_masks(cfg, cache_index + jnp.arange(t), segment_ids, positions,
                                    jnp.arange(k_seg.shape[1]), k_seg, k_pos)
            new_layers = []
        inv_freq = rope_frequencies(cfg)
        for i, block in enumerate(self.blocks):
            layer_cache = None if cache is None else cache["layers"][i]
            if cfg.remat and cache is None:  # training: recompute block activations in the backward pass
                x, layer_cache = _remat_block(block, x, positions, masks, inv_freq)
            else:
                x, layer_cache = block(x, positions, masks, inv_freq, layer_cache, cache_index)
            if cache is not None:
                new_layers.append(layer_cache)
        x = self.final_norm(x)
        new_cache = None if cache is None else {"layers": new_layers, "seg": k_seg, "pos": k_pos}
        return x, new_cache

    def logits(self, hidden):
        """LM logits [..., V] in float32 (final soft-capping included)."""
        w = self.embed[...].T if self.cfg.tie_embeddings else self.lm_head[...]
        out = dense(hidden, w.astype(hidden.dtype)).astype(jnp.float32)
        return softcap(out, self.cfg.final_softcap)

    def scores(self, hidden):
        """One scalar per position [..., ] in float32 (value or reward head)."""
        out = dense(hidden, self.score_head[...].astype(hidden.dtype)) + self.score_bias[...].astype(hidden.dtype)
        return out[..., 0].astype(jnp.float32)


def init_cache(cfg, batch: int, size: int, dtype=None):
    """An empty per-layer KV cache with `size` slots (segment 0 = empty)."""
    dt = jnp.dtype(dtype or cfg.dtype)
    kv = lambda: jnp.zeros((batch, cfg.n_kv_heads, size, cfg.head_dim), dt)  # heads-major (Attention)
    return {"layers": [{"k": kv(), "v": kv()} for _ in range(cfg.n_layers)],
            "seg": jnp.zeros((batch, size), jnp.int32), "pos": jnp.zeros((batch, size), jnp.int32)}


def positions_from_mask(mask):
    """Positions for a left-padded [B, T] mask: cumsum(mask) - 1, clipped at 0 on padding."""
    return jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=-1) - 1, 0)
