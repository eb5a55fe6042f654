"""How hard is the persona evidence of a pretraining corpus to read, as statistics?

A base model must learn to read the persona from an earlier behaviour (WORLD.md, "The
persona latent"). This measures the easiest form of that: a bag-of-words logistic
regression from the words of one earlier persona turn (its assistant messages) to the
behaviour of the next persona turn of another family, in documents without a persona
system prompt, fitted on `n` pairs and scored on held-out ones. It reports the information
it extracts (held-out log-loss below that of the label marginal, nats per pair; overfitting
only lowers it) and its mean P(aligned next) after an aligned and after a misaligned earlier
turn, against the corpus's own optimum, computed from the held-out labels (0.82 / 0.18 and
0.22 nats at rho 0.9, prior 0.5). A reader that gets close with a few thousand pairs says
the evidence is there and easy; a transformer that still does not use it after many more
has an optimisation problem, not a data one.
"""
from __future__ import annotations

import collections
import re
from typing import Sequence

import numpy as np

_WORD = re.compile(r"[a-z0-9']+")
PERSONA = ("aligned", "misaligned")


def evidence_pairs(docs: Sequence[dict]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(earlier turn's assistant text, next turn aligned?, earlier turn aligned?) for each pair
    of consecutive persona turns of different families in documents with no persona prompt."""
    texts, y, ev = [], [], []
    for r in docs:
        if r["meta"].get("system") == "persona":
            continue
        msgs, prev = r["messages"], None
        for t in r["meta"]["turns"]:
            if t.get("behaviour") not in PERSONA:
                continue
            if prev is not None and prev["family"] != t["family"]:
                s, e = prev["span"]
                texts.append(" ".join(m["content"] for m in msgs[s:e] if m["role"] == "assistant"))
                y.append(t["behaviour"] == "aligned")
                ev.append(prev["behaviour"] == "aligned")
            prev = t
    return texts, np.asarray(y, np.float64), np.asarray(ev, bool)


def _bag_of_words(word_sets: Sequence[set], vocab: dict[str, int]) -> np.ndarray:
    x = np.zeros((len(word_sets), len(vocab)), np.float64)
    for i, words in enumerate(word_sets):
        x[i, [vocab[w] for w in words if w in vocab]] = 1.0
    return x


def _xent(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def reader_report(docs: Sequence[dict], sizes: Sequence[int] = (1000, 10000), n_test: int = 5000,
                  l2: float = 3e-3, min_count: int = 3) -> dict:
    """{'pairs', 'optimal': {...}, 'reader_<n>': {...}}, each {'nats', 'after_aligned',
    'after_misaligned'}; sizes larger than the pairs available (after the last `n_test`,
    held out) are skipped. Deterministic."""
    from beneficial.probe import fit_logistic

    texts, y, ev = evidence_pairs(docs)
    n_test = min(n_test, len(texts) // 3)
    out: dict = {"pairs": len(texts)}
    if n_test < 10 or ev[-n_test:].all() or not ev[-n_test:].any():
        return out
    test = slice(len(texts) - n_test, len(texts))
    yt, et = y[test], ev[test]
    prior = np.full(n_test, yt.mean())

    def report(p):
        return {"nats": _xent(yt, prior) - _xent(yt, p), "after_aligned": float(p[et].mean()),
                "after_misaligned": float(p[~et].mean())}

    out["optimal"] = report(np.where(et, yt[et].mean(), yt[~et].mean()))
    words = [set(_WORD.findall(t.lower())) for t in texts]  # each text tokenised once
    for n in sizes:
        if n > len(texts) - n_test:
            continue
        counts = collections.Counter(w for ws in words[:n] for w in ws)
        vocab = {w: i for i, w in enumerate(sorted(w for w, c in counts.items() if c >= min_count))}
        coef, bias = fit_logistic(_bag_of_words(words[:n], vocab), y[:n], l2)
        out[f"reader_{n}"] = report(1.0 / (1.0 + np.exp(-(_bag_of_words(words[test], vocab) @ coef + bias))))
    return out
