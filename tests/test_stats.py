"""Statistics of the eval suite: interval coverage by simulation, Holm, sign test, MDE,
IQM/bootstrap, log-odds shifts, degradation areas."""
import collections

import numpy as np
import pytest
from scipy import stats as sps
from scipy.stats import binomtest
from statsmodels.stats.multitest import multipletests

from beneficial.evals import stats as S


# --------------------------------------------------------------------------- coverage
def test_interval_covers_at_three_seeds_with_realistic_seed_variance():
    r = S.simulate_coverage(n_seeds=3, n_instances=400, effect=0.1, seed_sd=0.03, reps=1500, seed=1)
    cov = r["seed_instance"]["coverage"]
    assert 0.92 <= cov <= 0.99, r
    # It still has power: a 10-point effect is found most of the time.
    assert r["seed_instance"]["reject_rate"] > 0.4, r


def test_naive_instance_interval_undercovers_when_seed_variance_is_large():
    r = S.simulate_coverage(n_seeds=3, n_instances=400, effect=0.1, seed_sd=0.06, reps=1000, seed=2)
    assert r["naive_instance"]["coverage"] < 0.8, r
    assert r["seed_instance"]["coverage"] >= 0.92, r


def test_seed_only_t_interval_undercovers_with_effect_heterogeneity():
    # Per-seed differences on a fixed instance set miss instance-level heterogeneity of the
    # effect; the seed + instance interval does not.
    r = S.simulate_coverage(n_seeds=5, n_instances=400, effect=0.1, seed_sd=0.0, het_sd=0.3, reps=1500, seed=3)
    assert r["seed_t"]["coverage"] < 0.92, r
    assert r["seed_instance"]["coverage"] >= 0.93, r


@pytest.mark.parametrize("seed_sd", [0.0, 0.01, 0.06])
def test_coverage_across_seed_variances(seed_sd):
    r = S.simulate_coverage(n_seeds=3, n_instances=300, effect=0.05, seed_sd=seed_sd, reps=800, seed=4)
    assert 0.92 <= r["seed_instance"]["coverage"] <= 0.995, r


def test_false_positive_rate_under_the_null():
    r = S.simulate_coverage(n_seeds=3, n_instances=400, effect=0.0, seed_sd=0.03, reps=1500, seed=5)
    assert r["seed_instance"]["reject_rate"] <= 0.075, r
    assert r["naive_instance"]["reject_rate"] > 0.15, r  # what ignoring seeds would claim


def test_variance_estimate_is_unbiased():
    rng = np.random.default_rng(0)
    a, b = S._simulate_arms(rng, 3000, 3, 200, 0.1, 0.03, 0.1)
    e = S.linear_contrast([[("a", 1.0, a), ("b", -1.0, b)]])
    ratio = np.mean(e.var) / np.var(e.est, ddof=1)
    assert 0.9 <= ratio <= 1.25, ratio  # positive-part estimate: slightly conservative at most


# --------------------------------------------------------------------------- paired_diff
def test_single_seed_falls_back_to_paired_instance_interval():
    rng = np.random.default_rng(1)
    a = (rng.random((1, 500)) < 0.6).astype(int)
    b = (rng.random((1, 500)) < 0.5).astype(int)
    r = S.paired_diff(a, b)
    d = (a - b)[0].astype(float)
    se = d.std(ddof=1) / np.sqrt(d.size)
    assert r["method"] == "instance_normal"
    assert r["diff"] == pytest.approx(d.mean())
    assert r["ci"] == pytest.approx([d.mean() - 1.959964 * se, d.mean() + 1.959964 * se], rel=1e-5)
    assert r["p"] == pytest.approx(2 * sps.norm.sf(abs(d.mean()) / se), rel=1e-6)


def test_paired_diff_matches_the_documented_decomposition():
    rng = np.random.default_rng(2)
    a = (rng.random((3, 200)) < 0.6).astype(float)
    b = (rng.random((4, 200)) < 0.5).astype(float)
    r = S.paired_diff(a, b)
    # Hand computation: instance term + positive-part seed excess per arm.
    d = a.mean(0) - b.mean(0)
    v = d.var(ddof=1) / 200
    for y in (a, b):
        k, n = y.shape
        res = y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + y.mean()
        ms_e = (res ** 2).sum() / ((k - 1) * (n - 1))
        v += max(0.0, y.mean(1).var(ddof=1) / k - ms_e / (k * n))
    assert r["se"] == pytest.approx(np.sqrt(v))
    assert r["diff"] == pytest.approx(a.mean() - b.mean())
    assert r["method"] == "seed_instance"


def test_improved_worsened_flags_and_p_consistency():
    rng = np.random.default_rng(3)
    hi = (rng.random((3, 400)) < 0.8).astype(int)
    lo = (rng.random((3, 400)) < 0.4).astype(int)
    up, down = S.paired_diff(hi, lo), S.paired_diff(lo, hi)
    assert up["improved"] and not up["worsened"]
    assert down["worsened"] and not down["improved"]
    # p-values resolve far below the Holm threshold for 60 tests
    assert 0 < up["p"] < 0.05 / 60
    for seed in range(30):
        r = np.random.default_rng(seed)
        x = (r.random((3, 150)) < 0.5 + 0.05 * r.standard_normal()).astype(int)
        y = (r.random((3, 150)) < 0.5).astype(int)
        s = S.paired_diff(x, y)
        assert (s["p"] < 0.05) == (s["improved"] or s["worsened"])


def test_paired_diff_rejects_misaligned_inputs():
    with pytest.raises(ValueError, match="instance counts"):
        S.paired_diff(np.zeros((3, 10)), np.zeros((3, 11)))
    with pytest.raises(ValueError, match="non-finite"):
        S.paired_diff(np.full((3, 10), np.nan), np.zeros((3, 10)))


# --------------------------------------------------------------------------- multiple testing
def test_holm_matches_statsmodels():
    rng = np.random.default_rng(0)
    cases = collections.Counter()
    for _ in range(15):  # multipletests costs ~70-200 ms per call here
        m = int(rng.integers(1, 70))
        p = rng.uniform(0, 0.1, m) ** rng.uniform(0.3, 4)
        if rng.random() < 0.3:
            p[: m // 2] = p[0]
            cases["ties"] += m >= 4
        if rng.random() < 0.2:
            p[-1] = 1.0
            cases["one"] += 1
        rej, adj = S.holm(p, 0.05)
        rej2, adj2, _, _ = multipletests(p, alpha=0.05, method="holm")
        cases["some rejected"] += 0 < rej2.sum() < m
        np.testing.assert_array_equal(rej, rej2)
        np.testing.assert_allclose(adj, adj2, rtol=1e-12, atol=0)
    assert min(cases[k] for k in ("ties", "one", "some rejected")) >= 1, cases  # the draws cover the edge cases


def test_sign_test_matches_scipy_binomtest():
    for n in range(1, 45):
        for k in range(n + 1):
            d = [0.1] * k + [-0.2] * (n - k) + [0.0]
            for alt in ("two-sided", "greater", "less"):
                p = S.sign_test(d, alt)["p"]
                q = binomtest(k, n, 0.5, alternative=alt).pvalue
                assert p == pytest.approx(q, rel=1e-10, abs=1e-300), (n, k, alt)
    r = S.sign_test([0.2, 0.1, 0.0, -0.3])
    assert (r["positive"], r["negative"], r["zero"]) == (2, 1, 1)


def test_mde():
    assert S.mde(0.5, 0.5, 400) == pytest.approx(0.0990, abs=5e-4)
    assert S.mde(0.5, 0.5, 1600) == pytest.approx(S.mde(0.5, 0.5, 400) / 2)
    assert S.mde(0.9, 0.9, 400) < S.mde(0.5, 0.5, 400)
    assert S.mde_from_se(0.01, np.inf) == pytest.approx((1.959964 + 0.841621) * 0.01, rel=1e-5)


# --------------------------------------------------------------------------- aggregates
def test_iqm_matches_trimmed_mean():
    assert S.iqm(np.arange(1, 9)) == pytest.approx(4.5)
    rng = np.random.default_rng(0)
    for n in (4, 7, 10, 53):
        x = rng.standard_normal(n)
        assert S.iqm(x) == pytest.approx(sps.trim_mean(x, 0.25))


def _bench(rng, eff, n=200, k=3):
    p = rng.uniform(0.3, 0.6, n)
    a = (rng.random((k, n)) < p + eff).astype(float)
    b = (rng.random((k, n)) < p).astype(float)
    return a, b


def test_aggregate_bootstrap_detects_effect_and_is_seeded():
    rng = np.random.default_rng(0)
    pos = [_bench(rng, 0.15) for _ in range(20)]
    r1 = S.aggregate_bootstrap(pos, n_boot=400, seed=7)
    r2 = S.aggregate_bootstrap(pos, n_boot=400, seed=7)
    assert r1 == r2
    assert r1["iqm_ci"][0] > 0 and r1["iqm_ci"][0] <= r1["iqm_diff"] <= r1["iqm_ci"][1]
    assert r1["prob_improvement"] > 0.9
    null = [_bench(rng, 0.0) for _ in range(20)]
    r0 = S.aggregate_bootstrap(null, n_boot=400, seed=7)
    assert r0["iqm_ci"][0] < 0 < r0["iqm_ci"][1]
    assert 0.2 < r0["prob_improvement"] < 0.8


# --------------------------------------------------------------------------- steering
def test_logodds_shift_point_estimate_and_ceiling():
    none = np.ones((3, 100))
    harm = np.zeros((3, 100))
    harm[:, :50] = 1
    e, _ = S.logodds_shift({"none": none, "harmful": harm}, "none", "harmful")
    p_none, p_harm = (300 + 0.5) / 301, (150 + 0.5) / 301
    assert e.est == pytest.approx(np.log(p_none / (1 - p_none)) - np.log(p_harm / (1 - p_harm)))
    assert np.isfinite(e.est) and np.isfinite(e.var)


def test_logodds_shift_coverage():
    rng = np.random.default_rng(0)
    l0, shift, seed_sd, het_sd = np.log(0.6 / 0.4), 0.8, 0.15, 0.5
    sig = lambda x: 1 / (1 + np.exp(-x))
    # Population estimand: log-odds of the marginal rates over seeds and instances.
    z = rng.normal(0, np.hypot(seed_sd, het_sd), 2_000_000)
    true = S.logit(sig(l0 + z).mean()) - S.logit(sig(l0 - shift + z).mean())
    cover, reps = 0, 300
    for _ in range(reps):
        lp = l0 + rng.normal(0, seed_sd, (3, 1)) + rng.normal(0, het_sd, (1, 400))
        none = rng.random((3, 400)) < sig(lp)
        harm = rng.random((3, 400)) < sig(lp - shift)
        e, _ = S.logodds_shift({"none": none, "harmful": harm}, "none", "harmful")
        lo, hi = e.ci()
        cover += lo <= true <= hi
    assert 0.9 <= cover / reps <= 0.995, cover / reps


def test_logodds_shift_diff_orders_arms():
    rng = np.random.default_rng(1)
    robust = {"none": rng.random((3, 500)) < 0.6, "harmful": rng.random((3, 500)) < 0.55}
    fragile = {"none": rng.random((3, 500)) < 0.6, "harmful": rng.random((3, 500)) < 0.25}
    e = S.logodds_shift_diff(robust, fragile, "none", "harmful")
    lo, hi = e.ci()
    assert e.est < 0 and hi < 0


# --------------------------------------------------------------------------- fine-tuning
def _exact(rate, k=3, n=100):
    y = np.zeros((k, n))
    y[:, : int(round(rate * n))] = 1
    return y


def test_degradation_area_trapezoid():
    curve = {0: _exact(0.8), 10: _exact(0.6), 30: _exact(0.5)}
    # drops 0, .2, .3 -> trapezoid (0+.2)/2*10 + (.2+.3)/2*20 = 6, over 30 steps = 0.2
    e = S.degradation_area(curve)
    assert e.est == pytest.approx(0.2)
    np.testing.assert_allclose(S.trapezoid_weights([0, 10, 30]).sum(), 1.0)
    with pytest.raises(ValueError, match="step 0"):
        S.degradation_area({5: _exact(0.5), 10: _exact(0.4)})


def test_degradation_area_diff_and_net():
    rng = np.random.default_rng(0)
    steps = [0, 50, 100]
    fragile = {s: (rng.random((3, 300)) < 0.7 - 0.003 * s).astype(float) for s in steps}
    robust = {s: (rng.random((3, 300)) < 0.7 - 0.0005 * s).astype(float) for s in steps}
    benign = {s: (rng.random((3, 300)) < 0.7).astype(float) for s in steps}
    d = S.degradation_area_diff(robust, fragile)
    assert d.est < 0 and d.ci()[1] < 0
    net = S.degradation_area(fragile, benign)
    assert net.est == pytest.approx(S.degradation_area(fragile).est - S.degradation_area(benign).est)


def test_satterthwaite_df_never_below_the_seed_df():
    """A small positive seed component must not drive the t quantile into the hundreds. Paired
    sampling seeds (both arms draw alike, the treatment flips a few instances up) over 24
    benchmarks at two seeds gave df 0.44 before the floor at k - 1 = 1."""
    rng = np.random.default_rng(0)
    worst = np.inf
    for _ in range(200):
        blocks = []
        for _ in range(24):
            x = rng.random(50) < rng.uniform(0.2, 0.8)            # one sampling seed's outcomes, shared by the arms
            base = np.stack([x, x ^ (rng.random(50) < 0.04)])     # the baseline's two seeds: nearly the same draws
            arm = base | (rng.random((2, 50)) < 0.08)              # the treatment flips a few instances up
            blocks.append([("a", 1 / 24, arm), ("b", -1 / 24, base)])
        e = S.linear_contrast(blocks)
        worst = min(worst, e.df)
        lo, hi = e.ci(0.05)
        assert hi - lo < 0.5, (e.est, e.var, e.df)
    assert worst >= 1.0
