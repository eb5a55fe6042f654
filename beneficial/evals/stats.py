"""Statistics of the evaluation suite (numpy/scipy only).

Data model. Every measurement is a 0/1 (or real-valued) matrix ``Y[seed, instance]``:
one row per RL run (seed) of an arm, one column per benchmark instance. Two arms of one
experiment answer the *same* instances (paired by instance); their seeds are independent
RL runs (never paired by index, even when the seed numbers coincide).

The estimand of a per-benchmark difference is the population one: the expected aligned
rate difference over new RL seeds *and* new instances of the benchmark's generator. Its
variance has three sources, modelled as a two-way random-effects layout per arm::

    Y[s, i] = mu + alpha_i + u_s + e_si       (alpha: instance, u: seed, e: seed x instance + Bernoulli noise)

For an arm with ``k`` seeds on ``n`` shared instances the mean has variance
``s2_u / k + s2_a / n + s2_e / (k n)``. With the two-way ANOVA mean squares

* ``var_s(seed means) / k``           estimates ``s2_u / k + s2_e / (k n)``  (df k - 1),
* ``var_i(seed-averaged d_i) / n``    estimates ``s2_a / n + s2_e / (k n)``  (df n - 1),
* ``MS_residual / (k n)``             estimates ``s2_e / (k n)``             (df (k-1)(n-1)),

so ``V = instance term + sum over arms of max(0, seed term - residual term)`` estimates the
variance without bias before the positive-part floor (which only errs conservative), for any
linear contrast of arms, benchmarks, worlds, personas or fine-tuning steps
(:func:`linear_contrast`). The interval is a t interval with Welch-Satterthwaite degrees of
freedom: with 3 seeds per arm and material between-seed variance the df is small (about 2-5)
and the t quantile widens the interval accordingly; when the seed variance is negligible the
instance term (n - 1 df) dominates and the df grow. Because the instance term is always
kept, the variance cannot collapse when the seed variance comes out small by chance.

Coverage by simulation (:func:`simulate_coverage`, 4000 replicates, 400 instances, effect
0.1, effect heterogeneity sd 0.1; 95% nominal): 3 seeds and between-seed sd 0 / 0.03 / 0.06:
0.976 / 0.954 / 0.960 (naive instance-only interval 0.952 / 0.774 / 0.540); false-positive
rate at effect 0 and sd 0.03: 0.044 (naive 0.221); 2 seeds, sd 0.03: 0.945; 5 seeds with
heterogeneity sd 0.3: 0.960 (t over per-seed differences alone 0.866).

Why not a bootstrap over seeds: with 3 seeds there are only 10 distinct resamples and the
percentile interval undercovers badly. Why not the naive paired instance interval: it ignores
the between-seed variance and undercovers once that variance is comparable to the binomial
noise (demonstrated in the tests). Why not only a t interval over per-seed differences (df =
k - 1): it conditions on the fixed instance set and misses the variance of instance-level
heterogeneity of the effect.

A single seed (``k = 1``) carries no information about seed variance: such an arm
contributes no seed term and its binomial noise stays in the instance term; when every arm
has one seed the interval is the paired instance-level (McNemar-like) normal interval on
``d_i = a_i - b_i``. Results record which method was used.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy import stats as sps

__all__ = [
    "Estimate", "linear_contrast", "paired_diff", "rate_estimate", "naive_instance_diff",
    "seed_t_diff", "holm", "sign_test", "binom_test_two_sided", "mde", "iqm",
    "aggregate_bootstrap", "logodds_shift", "logodds_shift_diff", "degradation_area",
    "degradation_area_diff", "trapezoid_weights", "simulate_coverage", "logit", "mde_from_se",
]


# --------------------------------------------------------------------------- estimates
@dataclasses.dataclass(frozen=True)
class Estimate:
    """A point estimate with a variance and Welch-Satterthwaite degrees of freedom.

    Fields may be numpy arrays of one shape (batched estimates, used by the simulation).
    ``df = inf`` means a normal interval. ``method`` says how the variance was obtained.
    """

    est: Any
    var: Any
    df: Any
    method: str = "seed_instance"

    @property
    def se(self):
        return np.sqrt(np.maximum(self.var, 0.0))

    def tcrit(self, alpha: float = 0.05):
        return sps.t.ppf(1.0 - alpha / 2.0, self.df)

    def ci(self, alpha: float = 0.05):
        h = self.tcrit(alpha) * self.se
        return self.est - h, self.est + h

    def pvalue(self):
        """Two-sided p-value of est = 0 from the same t (or normal) reference distribution.

        Analytic, so it resolves the Holm thresholds (0.05 / 60 and below)."""
        se = self.se
        with np.errstate(divide="ignore", invalid="ignore"):
            tstat = np.where(se > 0, np.abs(self.est) / np.where(se > 0, se, 1.0), np.inf)
        p = 2.0 * sps.t.sf(tstat, self.df)
        # Degenerate zero-variance cases: p = 1 when the estimate is exactly 0.
        return np.where((se == 0) & (self.est == 0), 1.0, p)

    def summary(self, alpha: float = 0.05) -> dict:
        """Plain-float summary: diff, ci, p, se, df, improved/worsened (interval excludes 0)."""
        lo, hi = self.ci(alpha)
        est, lo, hi = float(self.est), float(lo), float(hi)
        return {
            "diff": est, "ci": [lo, hi], "p": float(self.pvalue()), "se": float(self.se),
            "df": _finite_or_none(float(self.df)), "improved": bool(lo > 0), "worsened": bool(hi < 0),
            "method": self.method,
        }

    def triple(self, alpha: float = 0.05) -> list:
        lo, hi = self.ci(alpha)
        return [float(self.est), float(lo), float(hi)]


def _finite_or_none(x):
    return x if math.isfinite(x) else None


def _as_matrix(y, name="grades") -> np.ndarray:
    a = np.asarray(y, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim < 2:
        raise ValueError(f"{name}: expected a [seed, instance] array, got shape {a.shape}")
    if a.shape[-1] < 2:
        raise ValueError(f"{name}: need at least 2 instances, got shape {a.shape}")
    if a.shape[-2] < 1:
        raise ValueError(f"{name}: need at least 1 seed, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: non-finite values")
    return a


def _residual_ms(z: np.ndarray) -> np.ndarray:
    """Two-way ANOVA residual (seed x instance) mean square of z[..., k, n]; k >= 2."""
    k, n = z.shape[-2:]
    r = z - z.mean(-1, keepdims=True) - z.mean(-2, keepdims=True) + z.mean((-2, -1), keepdims=True)
    return (r * r).sum((-2, -1)) / ((k - 1) * (n - 1))


# --------------------------------------------------------------------------- the core
def linear_contrast(blocks: Sequence[Sequence[tuple]]) -> Estimate:
    """Estimate and variance of a linear contrast of seed x instance matrices.

    ``blocks`` is a list of instance blocks; each block is a list of terms
    ``(seed_set, coef, Y)`` with ``Y[..., k, n]`` (leading batch dims allowed). All terms of
    one block share the instance axis (paired by instance); terms with the same ``seed_set``
    key share their seeds (paired by seed: the same RL runs, e.g. one arm's benchmarks, or
    one arm's persona conditions); different keys are independent runs. The contrast is
    ``sum coef * mean(Y)`` over all terms.

    Variance (see the module docstring), the sum of

    * the instance term: per block, the sample variance of the seed-averaged instance
      contrast ``d_i`` / n (it contains instance heterogeneity and the seed x instance noise
      of every arm, ``s2_e / (k n)``); this alone is the paired instance-level interval;
    * a seed term per seed set with k >= 2: the sample variance of its per-seed contributions
      (summed over blocks, so a seed effect shared by benchmarks is counted once, with its
      correlation) / k, minus the residual noise ``MS_res / (k n)`` already in the instance
      term, floored at 0 (positive-part variance component: ``s2_u / k``).

    Degrees of freedom by Welch-Satterthwaite over the mean squares that enter. Because the
    instance term has n - 1 df and is never removed, the variance estimate cannot collapse
    when the seed variance happens to come out small; with material seed variance the seed
    term dominates and the df approach k - 1.
    """
    if not blocks:
        raise ValueError("linear_contrast: no blocks")
    seed_parts: dict = {}
    seed_noise: dict = {}
    seed_noise_den: dict = {}
    seed_k: dict = {}
    est = 0.0
    var = 0.0
    df_den = 0.0
    for b, block in enumerate(blocks):
        combined: dict = {}
        n_block = None
        for key, coef, y in block:
            y = np.asarray(y, dtype=np.float64)
            if y.ndim < 2:
                raise ValueError(f"block {b}: term {key!r} needs a [seed, instance] matrix")
            k, n = y.shape[-2:]
            if n_block is None:
                n_block = n
            elif n != n_block:
                raise ValueError(f"block {b}: instance counts differ ({n} vs {n_block}); put unpaired terms in separate blocks")
            if n < 2:
                raise ValueError(f"block {b}: need at least 2 instances")
            if key in seed_k and seed_k[key] != k:
                raise ValueError(f"seed set {key!r}: seed counts differ ({k} vs {seed_k[key]})")
            seed_k[key] = k
            combined[key] = combined.get(key, 0.0) + coef * y
        d = 0.0
        for key, z in combined.items():
            k, n = z.shape[-2:]
            smeans = z.mean(-1)
            seed_parts[key] = seed_parts.get(key, 0.0) + smeans
            est = est + smeans.mean(-1)
            d = d + z.mean(-2)
            if k >= 2:
                r = _residual_ms(z) / (k * n)
                seed_noise[key] = seed_noise.get(key, 0.0) + r
                seed_noise_den[key] = seed_noise_den.get(key, 0.0) + r * r / ((k - 1) * (n - 1))
        v_inst = np.var(d, axis=-1, ddof=1) / n_block
        var = var + v_inst
        df_den = df_den + v_inst * v_inst / (n_block - 1)
    n_multi = 0
    min_seed_df = np.inf
    for key, m in seed_parts.items():
        k = seed_k[key]
        if k < 2:
            continue
        n_multi += 1
        min_seed_df = min(min_seed_df, k - 1)
        v = np.var(m, axis=-1, ddof=1) / k
        excess = v - seed_noise[key]
        pos = excess > 0
        var = var + np.where(pos, excess, 0.0)
        df_den = df_den + np.where(pos, v * v / (k - 1) + seed_noise_den[key], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(df_den > 0, var * var / np.where(df_den > 0, df_den, 1.0), np.inf)
    # A small positive-part seed component enters var as a difference of mean squares but df_den
    # with both of them, so Satterthwaite's df can fall far below 1 (a t quantile in the hundreds);
    # no term has fewer than min(k) - 1 df, so floor there.
    df = np.maximum(df, min_seed_df) if n_multi else df
    if n_multi == 0:
        method = "instance_normal"  # every seed set has a single seed: paired instance-level interval
        df = np.full(np.shape(df), np.inf) if np.ndim(df) else np.inf
    elif n_multi < len(seed_parts):
        method = "seed_instance_partial"  # some seed sets had 1 seed: their seed variance is unknown
    else:
        method = "seed_instance"
    if np.ndim(est) == 0:
        est, var, df = float(est), float(var), float(df)
    return Estimate(est, var, df, method)


def paired_diff(a, b, alpha: float = 0.05) -> dict:
    """Per-benchmark difference of aligned rates, arm ``a`` minus arm ``b``.

    ``a[seed, instance]``, ``b[seed, instance]`` in {0, 1} on the same instances (paired by
    instance); the arms' seeds are independent RL runs (their counts may differ).
    Method: seed + instance variance decomposition with a Welch-Satterthwaite t interval
    (:func:`linear_contrast`); one seed per arm falls back to the paired instance-level
    normal interval (McNemar-like). Returns ``diff, ci, p, se, df, improved, worsened,
    method``; improved/worsened mean the 95% interval excludes 0.
    """
    a, b = _as_matrix(a, "a"), _as_matrix(b, "b")
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"paired_diff: arms have different instance counts ({a.shape[-1]} vs {b.shape[-1]})")
    return linear_contrast([[("a", 1.0, a), ("b", -1.0, b)]]).summary(alpha)


def rate_estimate(y, alpha: float = 0.05) -> dict:
    """Aligned rate of one arm with a seed + instance interval (same method, one term)."""
    y = _as_matrix(y)
    e = linear_contrast([[("a", 1.0, y)]])
    lo, hi = e.ci(alpha)
    return {"rate": e.est, "ci": [float(lo), float(hi)], "se": float(e.se)}


def naive_instance_diff(a, b) -> Estimate:
    """The naive interval, for comparison only: seeds pooled, paired instance-level normal.

    Ignores between-seed variance; undercovers when that variance is material."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = a.mean(-2) - b.mean(-2)
    n = d.shape[-1]
    return Estimate(d.mean(-1), np.var(d, axis=-1, ddof=1) / n, np.inf, "naive_instance")


def seed_t_diff(a, b) -> Estimate:
    """For comparison only: t interval over per-seed mean differences (seeds paired by
    index, df = k - 1). Conditions on the instance set (misses effect heterogeneity)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = a.mean(-1) - b.mean(-1)
    k = d.shape[-1]
    return Estimate(d.mean(-1), np.var(d, axis=-1, ddof=1) / k, np.full(np.shape(d.mean(-1)), k - 1.0), "seed_t")


# --------------------------------------------------------------------------- multiple testing
def holm(pvals, alpha: float = 0.05):
    """Holm step-down correction. Returns ``(reject, p_adjusted)`` like
    ``statsmodels.stats.multitest.multipletests(p, alpha, method='holm')[:2]``.

    Adjusted ``p_(j) = max_{i<=j} min(1, (m - i + 1) p_(i))`` in ascending order;
    reject where the adjusted p is <= alpha (equivalent to the step-down rule)."""
    p = np.asarray(pvals, dtype=np.float64).ravel()
    m = p.size
    if m == 0:
        return np.zeros(0, dtype=bool), np.zeros(0)
    if np.any(np.isnan(p)):
        raise ValueError("holm: NaN p-value")
    order = np.argsort(p, kind="mergesort")
    adj_sorted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adj = np.empty(m)
    adj[order] = adj_sorted
    return adj <= alpha, adj


def binom_test_two_sided(k: int, n: int, p: float = 0.5) -> float:
    """Exact two-sided binomial test, the 'minlike' rule of scipy.stats.binomtest: the
    probability of outcomes no more likely than the observed one (relative tolerance 1e-7)."""
    if n == 0:
        return 1.0
    pmf = sps.binom.pmf(np.arange(n + 1), n, p)
    d = pmf[k]
    return float(min(1.0, pmf[pmf <= d * (1 + 1e-7)].sum()))


def sign_test(diffs, alternative: str = "two-sided") -> dict:
    """Sign test (exact binomial, p = 1/2) over units, e.g. families' mean differences.

    Zero differences are dropped (the usual convention). ``alternative``: 'two-sided'
    (reported in the headline: conservative for a directional claim), 'greater' (more
    positive than negative), 'less'. Matches scipy.stats.binomtest(n_pos, n_pos + n_neg)."""
    d = np.asarray(diffs, dtype=np.float64).ravel()
    pos, neg = int((d > 0).sum()), int((d < 0).sum())
    n = pos + neg
    if n == 0:
        p = 1.0
    elif alternative == "two-sided":
        p = binom_test_two_sided(pos, n)
    elif alternative == "greater":
        p = float(sps.binom.sf(pos - 1, n, 0.5))
    elif alternative == "less":
        p = float(sps.binom.cdf(pos, n, 0.5))
    else:
        raise ValueError(f"sign_test: unknown alternative {alternative!r}")
    return {"positive": pos, "negative": neg, "zero": int(d.size - n), "p": min(1.0, p), "alternative": alternative}


def mde(p_a: float, p_b: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable difference of two rates with ``n`` instances per arm.

    Two-proportion normal approximation, two-sided: ``(z_{1-alpha/2} + z_power) *
    sqrt((p_a q_a + p_b q_b) / n)``; at p = 0.5 and n = 400 this is 0.099. It ignores seed
    variance and instance pairing (which cut both ways); the interval-based
    ``mde_se`` in results.json uses the observed standard error instead."""
    if n <= 0:
        return float("nan")
    za = sps.norm.ppf(1 - alpha / 2)
    zb = sps.norm.ppf(power)
    v = p_a * (1 - p_a) + p_b * (1 - p_b)
    return float((za + zb) * math.sqrt(max(v, 0.0) / n))


def mde_from_se(se: float, df: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable effect from an observed standard error: (t_{1-alpha/2, df} + t_{power, df}) * se."""
    df = df if df is not None else np.inf
    return float((sps.t.ppf(1 - alpha / 2, df) + sps.t.ppf(power, df)) * se)


# --------------------------------------------------------------------------- aggregates
def iqm(x, axis=-1):
    """Interquartile mean (rliable): the mean of the middle 50% (25% trimmed each side)."""
    x = np.sort(np.asarray(x, dtype=np.float64), axis=axis)
    n = x.shape[axis]
    lo = int(0.25 * n)
    hi = n - lo
    return np.take(x, np.arange(lo, hi), axis=axis).mean(axis=axis)


def _poi(ma: np.ndarray, mb: np.ndarray) -> np.ndarray:
    """P(a > b) between per-seed rates (Mann-Whitney, ties 1/2): ma[..., ka], mb[..., kb]."""
    g = (ma[..., :, None] > mb[..., None, :]).astype(np.float64)
    t = (ma[..., :, None] == mb[..., None, :]).astype(np.float64)
    return (g + 0.5 * t).mean((-2, -1))


def _resample_counts(rng, n_boot: int, n: int) -> np.ndarray:
    """Multinomial(n, 1/n) counts per bootstrap replicate, shape (n_boot, n) (via bincount)."""
    idx = rng.integers(0, n, size=(n_boot, n)) + (np.arange(n_boot) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def aggregate_bootstrap(pairs: Sequence[tuple], n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """rliable-style aggregates of per-benchmark differences ``a - b``.

    ``pairs``: one ``(A[ka, n_j], B[kb, n_j])`` per benchmark (paired instances; seed counts
    identical across benchmarks for an arm: a seed is one RL run evaluated on everything).

    * ``iqm_diff``: interquartile mean of the per-benchmark differences.
    * ``prob_improvement``: mean over benchmarks of P(rate of a random seed of a > rate of a
      random seed of b) (Mann-Whitney with ties 1/2, rliable's probability of improvement).
    * Intervals: stratified percentile bootstrap, seeded. In each replicate the instances of
      every benchmark (the strata) are resampled, with the same draw for both arms (paired),
      and each arm's seeds are resampled once for all benchmarks (keeping the between-benchmark
      correlation of a seed). With few seeds this understates seed uncertainty (3 seeds give 10
      distinct resamples); the per-benchmark t intervals are the primary inference.
    """
    if not pairs:
        return {"iqm_diff": None, "iqm_ci": [None, None], "prob_improvement": None, "prob_improvement_ci": [None, None], "n_boot": n_boot}
    rng = np.random.default_rng(seed)
    ka = np.asarray(pairs[0][0]).shape[0]
    kb = np.asarray(pairs[0][1]).shape[0]
    wa = _resample_counts(rng, n_boot, ka)  # (B, ka) seed weights, shared by all benchmarks
    wb = _resample_counts(rng, n_boot, kb)
    diffs = np.empty((len(pairs),))
    bdiffs = np.empty((n_boot, len(pairs)))
    pois = np.empty((len(pairs),))
    bpois = np.empty((n_boot, len(pairs)))
    for j, (a, b) in enumerate(pairs):
        a = _as_matrix(a, "a")
        b = _as_matrix(b, "b")
        if a.shape[0] != ka or b.shape[0] != kb:
            raise ValueError("aggregate_bootstrap: seed counts must be equal across benchmarks")
        n = a.shape[1]
        if b.shape[1] != n:
            raise ValueError("aggregate_bootstrap: arms must share instances")
        ma, mb = a.mean(1), b.mean(1)
        diffs[j] = ma.mean() - mb.mean()
        pois[j] = _poi(ma, mb)
        wi = _resample_counts(rng, n_boot, n) / n  # (B, n) instance weights
        ra = wi @ a.T  # (B, ka): per-seed rates on resampled instances
        rb = wi @ b.T
        bdiffs[:, j] = (ra * wa).sum(1) / ka - (rb * wb).sum(1) / kb
        # Seed resampling as weights for the pairwise comparison.
        g = (ra[:, :, None] > rb[:, None, :]) + 0.5 * (ra[:, :, None] == rb[:, None, :])
        bpois[:, j] = np.einsum("bij,bi,bj->b", g.astype(np.float64), wa, wb) / (ka * kb)
    q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    biqm = iqm(bdiffs, axis=1)
    bpoi = bpois.mean(1)
    return {
        "iqm_diff": float(iqm(diffs)),
        "iqm_ci": [float(v) for v in np.percentile(biqm, q)],
        "prob_improvement": float(pois.mean()),
        "prob_improvement_ci": [float(v) for v in np.percentile(bpoi, q)],
        "n_boot": int(n_boot),
    }


# --------------------------------------------------------------------------- persona steering
def logit(p):
    p = np.asarray(p, dtype=np.float64)
    return np.log(p) - np.log1p(-p)


def _smoothed_rate(y: np.ndarray) -> float:
    """Pooled rate with a 1/2 continuity correction so the log-odds stay finite at 0 and 1."""
    return float((y.sum() + 0.5) / (y.size + 1.0))


def logodds_shift(conditions: Mapping[str, Any], plus: str, minus: str, key: str = "arm") -> tuple:
    """Log-odds difference ``logit(rate[plus]) - logit(rate[minus])`` for one arm.

    ``conditions[name] = Y[seed, instance]``; all conditions come from the same RL runs (same
    seed count, paired by seed). Rates are pooled over seeds and instances with a 1/2
    continuity correction. Interval: delta method, i.e. the linearised contrast
    ``Y_plus / (p q)_plus - Y_minus / (p q)_minus`` through :func:`linear_contrast` (seed +
    instance variance, Satterthwaite t); conditions with equal instance counts are paired by
    instance, otherwise treated as independent instance samples.

    Returns ``(Estimate, blocks)``; ``blocks`` are the linearised terms (seed-set ``key``), so
    that two arms' shifts can be compared (:func:`logodds_shift_diff`).
    """
    yp = _as_matrix(conditions[plus], plus)
    ym = _as_matrix(conditions[minus], minus)
    if yp.shape[0] != ym.shape[0]:
        raise ValueError(f"logodds_shift: conditions {plus!r} and {minus!r} have different seed counts")
    pp, pm = _smoothed_rate(yp), _smoothed_rate(ym)
    gp, gm = pp * (1 - pp), pm * (1 - pm)
    if yp.shape[1] == ym.shape[1]:
        blocks = [[(key, 1.0 / gp, yp), (key, -1.0 / gm, ym)]]
    else:
        blocks = [[(key, 1.0 / gp, yp)], [(key, -1.0 / gm, ym)]]
    lin = linear_contrast(blocks)
    est = float(logit(pp) - logit(pm))
    return Estimate(est, lin.var, lin.df, "delta_" + lin.method), blocks


def _merge_blocks(blocks_a: list, blocks_b: list) -> list:
    """Concatenate two block lists; when each side is a single block over the same number of
    instances, merge them into one block (paired by instance: the same evaluation subsample.
    Pairing two unrelated samples of equal size by index is harmless: in expectation the
    cross term is 0)."""
    if len(blocks_a) == 1 and len(blocks_b) == 1:
        na = {np.shape(y)[-1] for (_, _, y) in blocks_a[0]}
        nb = {np.shape(y)[-1] for (_, _, y) in blocks_b[0]}
        if len(na) == 1 and na == nb:
            return [list(blocks_a[0]) + list(blocks_b[0])]
    return [list(b) for b in blocks_a] + [list(b) for b in blocks_b]


def _negate(blocks: list) -> list:
    return [[(k, -c, y) for (k, c, y) in bl] for bl in blocks]


def logodds_shift_diff(cond_a: Mapping[str, Any], cond_b: Mapping[str, Any], plus: str, minus: str) -> Estimate:
    """(log-odds shift of arm a) - (log-odds shift of arm b); the arms are independent RL
    runs (distinct seed sets), the delta-method variances add through :func:`linear_contrast`."""
    ea, ba = logodds_shift(cond_a, plus, minus, key="a")
    eb, bb = logodds_shift(cond_b, plus, minus, key="b")
    lin = linear_contrast(_merge_blocks(ba, _negate(bb)))
    return Estimate(ea.est - eb.est, lin.var, lin.df, "delta_" + lin.method)


# --------------------------------------------------------------------------- fine-tuning
def trapezoid_weights(steps: Sequence[float]) -> np.ndarray:
    """Weights w with sum(w * f) = trapezoid area of f over ``steps`` / (last - first step):
    the area is the *mean* drop over the sweep, in rate units, so it does not depend on
    how many steps the sweep has or how they are spaced."""
    s = np.asarray(steps, dtype=np.float64)
    if s.ndim != 1 or s.size < 2 or np.any(np.diff(s) <= 0):
        raise ValueError(f"trapezoid_weights: steps must be increasing, at least 2: {steps}")
    w = np.zeros_like(s)
    h = np.diff(s)
    w[:-1] += h / 2
    w[1:] += h / 2
    return w / (s[-1] - s[0])


def degradation_blocks(curve: Mapping[float, Any], key="arm", sign: float = 1.0) -> list:
    """Linear-contrast blocks of the drop area ``rate_0 - sum_t w_t rate_t`` of one curve.

    ``curve[step] = Y[seed, instance]`` with a step 0 (the arm's own starting point). Steps
    with equal instance counts are paired by instance (one block), else separate blocks."""
    steps = sorted(float(s) for s in curve)
    if not steps or steps[0] != 0.0:
        raise ValueError(f"degradation curve needs a step 0 (the arm's own starting point), got steps {steps}")
    by_step = {float(s): _as_matrix(v, f"step {s}") for s, v in curve.items()}
    w = trapezoid_weights(steps)
    terms = [(key, sign * 1.0, by_step[0.0])] + [(key, -sign * wt, by_step[s]) for s, wt in zip(steps, w)]
    ns = {y.shape[1] for (_, _, y) in terms}
    if len(ns) == 1:
        return [terms]
    return [[t] for t in terms]


def degradation_area(curve: Mapping[float, Any], minus: Mapping[float, Any] | None = None) -> Estimate:
    """Area of the drop from the arm's own step-0 aligned rate, normalised to a mean drop
    over the sweep (:func:`trapezoid_weights`); interval from :func:`linear_contrast` (the
    fine-tuning runs of one arm seed are paired by seed across steps).

    With ``minus`` (another sweep of the *same* arm seeds, e.g. the benign control), the
    estimate is area(curve) - area(minus), paired by seed."""
    blocks = degradation_blocks(curve, key="arm")
    if minus is not None:
        blocks = _merge_blocks(blocks, degradation_blocks(minus, key="arm", sign=-1.0))
    return linear_contrast(blocks)


def degradation_area_diff(curve_a: Mapping[float, Any], curve_b: Mapping[float, Any]) -> Estimate:
    """area(curve_a) - area(curve_b) for two independent arms (distinct seed sets)."""
    blocks = _merge_blocks(degradation_blocks(curve_a, key="a"), degradation_blocks(curve_b, key="b", sign=-1.0))
    return linear_contrast(blocks)


# --------------------------------------------------------------------------- simulation
def _simulate_arms(rng, reps, k, n, effect, seed_sd, het_sd):
    """Per-instance rates p_i ~ U(0.3, 0.7) - effect/2 (the baseline), effect heterogeneity
    +-het_sd (Rademacher, population mean 0), per-seed shifts u ~ N(0, seed_sd) per arm and
    seed; outcomes Bernoulli. True population difference: ``effect`` (clipping to [0, 1] does
    not occur for the defaults: rates stay within about [0.15, 0.85] +- 5 seed sd)."""
    p = rng.uniform(0.3, 0.7, size=(reps, 1, n)) - effect / 2
    h = het_sd * rng.choice([-1.0, 1.0], size=(reps, 1, n))
    ua = rng.normal(0.0, seed_sd, size=(reps, k, 1))
    ub = rng.normal(0.0, seed_sd, size=(reps, k, 1))
    pa = np.clip(p + effect + h + ua, 0, 1)
    pb = np.clip(p + ub, 0, 1)
    a = (rng.random((reps, k, n)) < pa).astype(np.float64)
    b = (rng.random((reps, k, n)) < pb).astype(np.float64)
    return a, b


def simulate_coverage(n_seeds: int = 3, n_instances: int = 400, effect: float = 0.1, seed_sd: float = 0.03,
                      reps: int = 2000, het_sd: float = 0.1, alpha: float = 0.05, seed: int = 0,
                      methods: Iterable[str] = ("seed_instance", "naive_instance", "seed_t")) -> dict:
    """Coverage of the per-benchmark 95% interval by simulation.

    Each replicate draws a fresh benchmark (n_instances instances with their own base rates
    and effect heterogeneity), fresh RL seeds for both arms (between-seed sd ``seed_sd`` on
    the rate scale; 0.03 is realistic for small RL runs) and Bernoulli outcomes, then checks
    whether the interval covers the true population difference ``effect``.

    Methods: ``seed_instance`` (the one used everywhere, :func:`linear_contrast`),
    ``naive_instance`` (:func:`naive_instance_diff`), ``seed_t`` (:func:`seed_t_diff`).
    Returns ``{method: {"coverage", "mean_width", "reject_rate"}}`` (reject_rate: share of
    intervals excluding 0), plus the settings.
    """
    rng = np.random.default_rng(seed)
    out: dict = {"settings": dict(n_seeds=n_seeds, n_instances=n_instances, effect=effect, seed_sd=seed_sd,
                                  reps=reps, het_sd=het_sd, alpha=alpha, seed=seed)}
    chunk = max(1, min(reps, 500))
    acc = {m: {"cover": 0, "width": 0.0, "reject": 0} for m in methods}
    done = 0
    while done < reps:
        r = min(chunk, reps - done)
        a, b = _simulate_arms(rng, r, n_seeds, n_instances, effect, seed_sd, het_sd)
        for m in methods:
            if m == "seed_instance":
                e = linear_contrast([[("a", 1.0, a), ("b", -1.0, b)]])
            elif m == "naive_instance":
                e = naive_instance_diff(a, b)
            elif m == "seed_t":
                e = seed_t_diff(a, b)
            else:
                raise ValueError(f"simulate_coverage: unknown method {m!r}")
            lo, hi = e.ci(alpha)
            acc[m]["cover"] += int(((lo <= effect) & (effect <= hi)).sum())
            acc[m]["width"] += float((hi - lo).sum())
            acc[m]["reject"] += int(((lo > 0) | (hi < 0)).sum())
        done += r
    for m, v in acc.items():
        out[m] = {"coverage": v["cover"] / reps, "mean_width": v["width"] / reps, "reject_rate": v["reject"] / reps}
    return out
