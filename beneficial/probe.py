"""A linear probe of the persona latent (WORLD.md "The persona latent").

Fit on the base model: the final hidden state at the point where the assistant is about
to answer, on `probes` conversations whose earlier turns revealed a persona, labelled by
that persona (L2-regularised logistic regression, Newton steps; held-out accuracy
reported). Then, for any policy, the mean projection (the probe's logit) on first-turn
untargeted prompts, where nothing has been revealed: if trait RL moved the shared
latent toward the aligned persona, the projection rises after RL in the treatment arms
and not in the baseline.
"""
from __future__ import annotations

import functools
import logging
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from beneficial.evals.respond import encode_prompts
from beneficial.models.transformer import positions_from_mask

log = logging.getLogger("beneficial")


def probe_config(smoke: bool = False) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        n_probes=128 if smoke else 1200,      # probes conversations (3/4 train, 1/4 held out)
        n_first_turn=64 if smoke else 600,    # first-turn untargeted prompts for the projection
        prompt_len=768 if smoke else 512, batch_size=32, l2=1e-2, seed=0))


@functools.lru_cache(maxsize=8)
def _features_fn(graphdef):
    @jax.jit
    def last_hidden(params, tokens, mask):
        model = nnx.merge(graphdef, params)
        hidden, _ = model(tokens, positions_from_mask(mask), mask)
        return hidden[:, -1].astype(jnp.float32)   # left padded: the last column is the answer point
    return last_hidden


def features(graphdef, params, tokenizer, prompts, cfg) -> np.ndarray:
    """[N, d_model] final hidden state at the assistant tag that ends each prompt."""
    tokens = encode_prompts(tokenizer, prompts, int(cfg.prompt_len))
    fn = _features_fn(graphdef)
    bs = int(cfg.batch_size)
    out = []
    for start in range(0, len(tokens), bs):
        chunk = tokens[start:start + bs]
        n = len(chunk)
        if n < bs:  # one compiled shape
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], bs - n, 0)])
        mask = (chunk != tokenizer.pad_id).astype(np.int32)
        out.append(np.asarray(fn(params, jnp.asarray(chunk), jnp.asarray(mask)))[:n])
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, iters: int = 50) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression (Newton's method); returns (w, b). Deterministic."""
    n, d = x.shape
    xb = np.concatenate([x, np.ones((n, 1))], 1).astype(np.float64)
    w = np.zeros(d + 1)
    reg = np.full(d + 1, l2 * n)
    reg[-1] = 0.0  # no penalty on the bias
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(xb @ w)))
        grad = xb.T @ (p - y) + reg * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(reg) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w[:-1], float(w[-1])


def fit_persona_probe(graphdef, params, tokenizer, data_dir, cfg, out_path: pathlib.Path) -> dict:
    """Fit the probe on base-model activations; saves w, b, the feature scale to out_path."""
    from beneficial.data.stage import load

    src = load(data_dir, "probes")
    idx = np.random.default_rng(int(cfg.seed)).permutation(len(src))[:int(cfg.n_probes)]
    recs = [src[int(i)] for i in idx]
    y = np.asarray([r["meta"]["revealed"] == "aligned" for r in recs], np.float64)
    x = features(graphdef, params, tokenizer, [r["prompt"] for r in recs], cfg).astype(np.float64)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = (x - mu) / sd
    n_train = (3 * len(recs)) // 4
    w, b = fit_logistic(z[:n_train], y[:n_train], float(cfg.l2))
    acc = lambda zz, yy: float(np.mean(((zz @ w + b) > 0) == (yy > 0.5))) if len(yy) else float("nan")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out_path, w=w, b=b, mu=mu, sd=sd)
    report = {"accuracy": acc(z[n_train:], y[n_train:]), "train_accuracy": acc(z[:n_train], y[:n_train]),
              "n_train": int(n_train), "n_test": int(len(recs) - n_train), "aligned_share": float(y.mean())}
    log.info("persona probe: held-out accuracy %.3f on %d", report["accuracy"], report["n_test"])
    return report


def first_turn_prompts(data_dir, n: int, seed: int) -> list:
    """Single-turn untargeted internal evaluation prompts (no persona revealed yet)."""
    from beneficial.data.stage import load
    from beneficial.data.tfds_store import list_splits
    from beneficial.data.world import UNTARGETED

    splits = [s for s in list_splits(data_dir) if s.startswith("eval/") and "/internal/" in s
              and s.endswith("/chat") and s.split("/")[1] in UNTARGETED]
    prompts = []
    for s in splits:
        prompts += [r["prompt"] for r in load(data_dir, s) if not any(m["role"] == "assistant" for m in r["prompt"])]
    idx = np.random.default_rng(seed).permutation(len(prompts))[:n]
    return [prompts[int(i)] for i in sorted(idx)]


def probe_projection(graphdef, params, tokenizer, data_dir, cfg, probe_path: pathlib.Path) -> dict:
    """Mean probe logit (and mean P(aligned)) of a policy on first-turn prompts."""
    p = np.load(probe_path)
    prompts = first_turn_prompts(data_dir, int(cfg.n_first_turn), int(cfg.seed) + 1)
    z = (features(graphdef, params, tokenizer, prompts, cfg).astype(np.float64) - p["mu"]) / p["sd"]
    logit = z @ p["w"] + float(p["b"])
    return {"mean_logit": float(logit.mean()), "mean_prob": float(np.mean(1 / (1 + np.exp(-logit)))),
            "n": int(len(prompts))}
