"""The comparison report: results.json, report.md, report.html and PNG plots.

``write_report(results, out_dir)`` renders everything into a temporary sibling directory
and swaps it into place with renames, so a crash never leaves a half-written report (at
worst the previous report survives under a ``.old`` name until the next successful write).

The HTML is self-contained (inline CSS, PNGs embedded as base64) and opens offline. Its
first screen: the headline sentence, a small headline table per arm, the improved /
unchanged / worsened bar per arm and the forest plot of per-benchmark differences.

Plots use matplotlib's object API with the Agg canvas (no pyplot, no global backend).
"""
from __future__ import annotations

import base64
import html
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

__all__ = ["write_report", "render_markdown", "render_html", "make_plots"]

GREEN, GREY, RED = "#2e7d32", "#9e9e9e", "#c62828"
ARM_COLORS = ["#1565c0", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457", "#558b2f", "#4e342e"]
CAT_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
              "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"]


# --------------------------------------------------------------------------- helpers
def _arms_compared(results: Mapping) -> list:
    return list(results.get("headline", {}))


def _primary(results: Mapping) -> str | None:
    arms = _arms_compared(results)
    return "treatment" if "treatment" in arms else (arms[0] if arms else None)


def _baseline(results: Mapping) -> str | None:
    for b in results.get("benchmarks", []):
        compared = set(b.get("vs_baseline", {}))
        rest = [a for a in b.get("rates", {}) if a not in compared]
        if rest:
            return rest[0]
    return None


def _pct(x, digits=1):
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def _pp(x, digits=1):
    return "–" if x is None else f"{100 * x:+.{digits}f}"


def _ci_pp(ci, digits=1):
    if not ci or ci[0] is None:
        return ""
    return f"[{100 * ci[0]:+.{digits}f}, {100 * ci[1]:+.{digits}f}]"


def _num(x, fmt="{:.3g}"):
    return "–" if x is None else fmt.format(x)


def _triple(t, digits=2):
    if not t:
        return "–"
    return f"{t[0]:+.{digits}f} [{t[1]:+.{digits}f}, {t[2]:+.{digits}f}]"


def _sig(v: Mapping) -> str:
    if v.get("improved"):
        return "▲" + ("*" if v.get("improved_holm") else "")
    if v.get("worsened"):
        return "▼" + ("*" if v.get("worsened_holm") else "")
    return "·"


def _si(x):
    if x is None:
        return "–"
    x = float(x)
    for unit, s in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= unit:
            return f"{x / unit:.3g} {s}"
    return f"{x:.3g}"


def _fig(w, h):
    fig = Figure(figsize=(w, h), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def _cat_colors(results):
    cats = sorted({b["category"] for b in results.get("benchmarks", [])})
    return {c: CAT_COLORS[i % len(CAT_COLORS)] for i, c in enumerate(cats)}


# --------------------------------------------------------------------------- plots
def _paired_bars(ax, arms, table, series):
    """Two bars per arm, one per (key, label, colour) of `series`, from `table[arm][key]` =
    (estimate, ci low, ci high) or None; error bars span the interval."""
    for j, (key, lab, col) in enumerate(series):
        xs = np.arange(len(arms)) + (j - 0.5) * 0.38
        t = [table[a].get(key) for a in arms]
        vals = [v[0] if v else np.nan for v in t]
        err = [[v[0] - v[1] if v else 0 for v in t], [v[2] - v[0] if v else 0 for v in t]]
        ax.bar(xs, vals, 0.36, color=col, label=lab, yerr=err, error_kw={"capsize": 3, "lw": 0.8})
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(arms)), arms, fontsize=8)


def plot_summary(results) -> bytes | None:
    """Stacked bar per arm: improved / no significant change / worsened untargeted benchmarks."""
    arms = _arms_compared(results)
    if not arms:
        return None
    fig = _fig(8, 0.55 * len(arms) + 1.1)
    ax = fig.add_subplot(111)
    for i, arm in enumerate(arms):
        h = results["headline"][arm]
        imp, wor, m = h["improved"], h["worsened"], h["untargeted"]
        ext = h["improved_external"]
        ax.barh(i, imp - ext, color=GREEN, edgecolor="white")
        ax.barh(i, ext, left=imp - ext, color=GREEN, alpha=0.65, hatch="//", edgecolor="white")
        ax.barh(i, m - imp - wor, left=imp, color=GREY, alpha=0.5, edgecolor="white")
        ax.barh(i, wor, left=m - wor, color=RED, edgecolor="white")
        ax.text(m + 0.3, i, f"{imp}/{m} improved, {wor} worsened", va="center", fontsize=9)
    ax.set_yticks(range(len(arms)), arms)
    ax.invert_yaxis()
    mmax = max(results["headline"][a]["untargeted"] for a in arms)
    ax.set_xlim(0, mmax * 1.45 + 1)
    ax.set_xlabel("untargeted benchmarks (vs baseline, 95% interval excludes 0)")
    ax.legend(handles=[Patch(color=GREEN, label="improved (internal)"),
                       Patch(facecolor=GREEN, alpha=0.65, hatch="//", label="improved (external)"),
                       Patch(color=GREY, alpha=0.5, label="no significant change"),
                       Patch(color=RED, label="worsened")], fontsize=8, loc="upper center",
              bbox_to_anchor=(0.5, -0.32), ncol=4, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def plot_forest(results) -> bytes | None:
    """Per-benchmark differences vs the baseline with 95% intervals: one panel per compared
    arm; untargeted benchmarks on top sorted by the primary arm's difference, targeted ones
    (in-distribution checks) below a separator; colored by category; significant intervals bold."""
    arms = _arms_compared(results)
    prim = _primary(results)
    bench = [b for b in results.get("benchmarks", []) if prim in b.get("vs_baseline", {})]
    if not bench:
        return None
    key = lambda b: b["vs_baseline"][prim]["diff"]
    unt = sorted([b for b in bench if not b["targeted"]], key=key)
    tgt = sorted([b for b in bench if b["targeted"]], key=key)
    rows = tgt + ([None] if tgt and unt else []) + unt  # bottom to top
    colors = _cat_colors(results)
    n = len(rows)
    height = 0.19 * n + 1.9
    fig = _fig(3.4 * len(arms) + 3.2, height)
    axes = fig.subplots(1, len(arms), sharey=True, squeeze=False)[0]
    cis = [v["ci"] for b in bench for v in b["vs_baseline"].values() if v["ci"][0] is not None]
    lo_all, hi_all = min(c[0] for c in cis), max(c[1] for c in cis)
    pad = 0.05 * (hi_all - lo_all + 1e-9)
    for ax, arm in zip(axes, arms):
        ax.axvline(0, color="black", lw=0.8)
        for i, b in enumerate(rows):
            if b is None:
                ax.axhline(i, color="#616161", lw=0.8, ls="--")
                continue
            v = b["vs_baseline"].get(arm)
            if v is None:
                continue
            c = colors[b["category"]]
            sig = v["improved"] or v["worsened"]
            ax.plot(v["ci"], [i, i], color=c, lw=2.0 if sig else 0.9, alpha=1.0 if sig else 0.5)
            marker = "D" if b["targeted"] else "o"
            ax.plot(v["diff"], i, marker=marker, ms=4.5, color=c,
                    markerfacecolor=("white" if b["targeted"] else c), markeredgewidth=1.2)
        h = results["headline"][arm]
        ax.set_title(f"{arm} − baseline\n{h['improved']}/{h['untargeted']} untargeted improved, {h['worsened']} worsened",
                     fontsize=9)
        ax.set_xlim(lo_all - pad, hi_all + pad)
        ax.grid(axis="x", alpha=0.3)
        ax.xaxis.set_major_formatter(lambda x, _: f"{100 * x:+.0f}")
        ax.set_xlabel("aligned-rate difference (pp), 95% interval", fontsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    labels = ["targeted traits ↓ / untargeted ↑" if b is None else b["name"] + (" (T)" if b["targeted"] else "")
              for b in rows]
    axes[0].set_yticks(np.arange(n), labels, fontsize=7)
    axes[0].set_ylim(-1, n)
    handles = [Line2D([], [], color=c, marker="o", ls="", label=k) for k, c in colors.items()]
    handles += [Line2D([], [], color="black", marker="o", ls="", label="untargeted"),
                Line2D([], [], color="black", marker="D", markerfacecolor="white", ls="", label="targeted (T)"),
                Line2D([], [], color="black", lw=2.0, label="interval excludes 0"),
                Line2D([], [], color="black", lw=0.9, alpha=0.5, label="interval includes 0")]
    fig.subplots_adjust(top=1 - 0.95 / height)
    fig.legend(handles=handles, loc="upper center", ncol=min(6, len(handles)), fontsize=7,
               bbox_to_anchor=(0.5, 1.0), frameon=False)
    return _png(fig)


def plot_categories(results) -> bytes | None:
    arms = _arms_compared(results)
    if not arms:
        return None
    splits = results.get("splits", {})
    cats = sorted({c for a in arms for c in splits.get(a, {}).get("category", {})})
    if not cats:
        return None
    fig = _fig(8, 0.45 * len(cats) * max(1, len(arms)) / 2 + 1.5)
    ax = fig.add_subplot(111)
    h = 0.8 / len(arms)
    for j, arm in enumerate(arms):
        sp = splits.get(arm, {}).get("category", {})
        ys, xs, errs = [], [], [[], []]
        for i, c in enumerate(cats):
            s = sp.get(c)
            if not s or s.get("diff") is None:
                continue
            ys.append(i + (j - (len(arms) - 1) / 2) * h)
            xs.append(s["diff"])
            errs[0].append(s["diff"] - s["ci"][0])
            errs[1].append(s["ci"][1] - s["diff"])
        ax.barh(ys, xs, height=h * 0.9, color=ARM_COLORS[j % len(ARM_COLORS)], label=arm, xerr=errs,
                error_kw={"lw": 0.8, "capsize": 2})
    targeted = {c for a in arms for c, s in splits.get(a, {}).get("category", {}).items() if s.get("targeted")}
    ax.set_yticks(range(len(cats)), [c + (" (T)" if c in targeted else "") for c in cats], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    ax.xaxis.set_major_formatter(lambda x, _: f"{100 * x:+.0f}")
    ax.set_xlabel("mean aligned-rate difference vs baseline (pp), 95% interval; (T) = targeted trait")
    ax.legend(fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def plot_steering(results) -> bytes | None:
    ps = results.get("persona_steering")
    if not ps:
        return None
    arms = list(ps)
    fig = _fig(11, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    conds = [c for c in ("harmful", "none", "helpful") if any(c in ps[a] for a in arms)]
    ccol = {"harmful": RED, "none": GREY, "helpful": GREEN}
    w = 0.8 / len(conds)
    for j, c in enumerate(conds):
        ax1.bar(np.arange(len(arms)) + (j - (len(conds) - 1) / 2) * w, [ps[a].get(c, np.nan) for a in arms], w * 0.95,
                color=ccol[c], label=f"{c} persona" if c != "none" else "no persona")
    ax1.set_xticks(range(len(arms)), arms, fontsize=8)
    ax1.set_ylim(0, 1)
    ax1.set_ylabel("aligned rate")
    ax1.legend(fontsize=8)
    ax1.set_title("aligned rate under persona prompts", fontsize=10)
    _paired_bars(ax2, arms, ps, (("harm_drop_logodds", "drop under harmful personas", RED),
                                 ("help_gain_logodds", "gain under helpful personas", GREEN)))
    ax2.set_ylabel("log-odds (from the arm's own no-persona rate)")
    ax2.set_title("steerability: lower red = more robust", fontsize=10)
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def plot_finetune(results) -> bytes | None:
    ft = results.get("finetune_resistance")
    if not ft:
        return None
    arms = list(ft)
    fig = _fig(11, 3.8)
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    for j, arm in enumerate(arms):
        o = ft[arm]
        col = ARM_COLORS[j % len(ARM_COLORS)]
        if o.get("steps"):
            ax1.plot(o["steps"], o["aligned"], "-o", color=col, ms=3.5, label=f"{arm} adversarial")
            if o.get("aligned_ci"):
                ax1.fill_between(o["steps"], [c[0] for c in o["aligned_ci"]], [c[1] for c in o["aligned_ci"]],
                                 color=col, alpha=0.12, lw=0)
        if o.get("benign_steps"):
            ax1.plot(o["benign_steps"], o["benign_aligned"], "--", color=col, lw=1.2, alpha=0.8, label=f"{arm} benign")
    ax1.set_xlabel("fine-tuning steps")
    ax1.set_ylabel("aligned rate (non-health untargeted)")
    ax1.set_title("degradation curves: solid adversarial, dashed benign control", fontsize=10)
    ax1.legend(fontsize=7, ncol=2)
    _paired_bars(ax2, arms, ft, (("drop_area", "adversarial", "#b71c1c"), ("benign_drop_area", "benign", "#9e9e9e")))
    ax2.set_ylabel("mean drop from own step 0")
    ax2.set_title("drop area (lower = more resistant)", fontsize=10)
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(alpha=0.3)
    return _png(fig)


def plot_curves(results) -> bytes | None:
    """Learning curves: untargeted aligned rate on a subsample vs PPO iteration, per world."""
    lc = results.get("learning_curves")
    if not lc:
        return None
    fig = _fig(5.2 * len(lc), 3.6)
    axes = np.atleast_1d(fig.subplots(1, len(lc)))
    for ax, (world, arms) in zip(axes, lc.items()):
        for j, (arm, c) in enumerate(arms.items()):
            y = np.asarray(c["aligned"], float)          # [seed, point]
            col = ARM_COLORS[j % len(ARM_COLORS)]
            ax.plot(c["iterations"], y.mean(0), "-o", color=col, ms=3.5, label=arm)
            if len(y) > 1:
                ax.fill_between(c["iterations"], y.min(0), y.max(0), color=col, alpha=0.12, lw=0)
        ax.set_xlabel("PPO iteration")
        ax.set_ylabel("untargeted aligned rate (subsample)")
        ax.set_title(f"{world} world (band: seed range)", fontsize=10)
        ax.legend(fontsize=7)
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(alpha=0.3)
    return _png(fig)


def plot_contrasts(results) -> bytes | None:
    con = results.get("contrasts")
    if not con:
        return None
    rows = []
    for name, c in con.items():
        if name == "did_control_world":
            rows.append(("default world: treatment − baseline", c["default_diff"], c["default_ci"], ARM_COLORS[0]))
            rows.append(("control world: treatment − baseline", c["control_diff"], c["control_ci"], GREY))
            rows.append(("difference in differences", c["diff"], c["ci"], "black"))
        elif c.get("diff") is not None:
            rows.append((name, c["diff"], c["ci"], ARM_COLORS[1]))
    fig = _fig(8, 0.42 * len(rows) + 1.1)
    ax = fig.add_subplot(111)
    for i, (lab, d, ci, col) in enumerate(rows):
        ax.errorbar(d, i, xerr=[[d - ci[0]], [ci[1] - d]], fmt="o", color=col, capsize=3)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    ax.xaxis.set_major_formatter(lambda x, _: f"{100 * x:+.0f}")
    ax.set_xlabel("mean aligned-rate difference over untargeted benchmarks (pp), 95% interval")
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def make_plots(results: Mapping) -> dict:
    """{filename: png bytes} for every plot that has data."""
    plots = {"summary.png": plot_summary(results), "forest.png": plot_forest(results),
             "categories.png": plot_categories(results), "contrasts.png": plot_contrasts(results),
             "steering.png": plot_steering(results), "finetune.png": plot_finetune(results),
             "curves.png": plot_curves(results)}
    return {k: v for k, v in plots.items() if v is not None}


# --------------------------------------------------------------------------- tables (shared)
def _tables(results: Mapping) -> dict:
    """Table rows shared by the markdown and the HTML: {name: (header, rows)}."""
    arms = _arms_compared(results)
    base = _baseline(results)
    t: dict = {}
    t["headline"] = (["arm", "improved / untargeted", "external improved", "worsened", "improved (Holm)",
                      "families improved", "sign test p", "IQM diff [95%]", "P(improvement)"],
                     [[a, f"{h['improved']} / {h['untargeted']}", f"{h['improved_external']} / {h['external']}",
                       str(h["worsened"]), str(h["improved_holm"]), f"{h['families_improved']} / {h['families']}",
                       _num(h["sign_test_p"]), f"{_pp(h['iqm_diff'])} {_ci_pp(h['iqm_ci'])}",
                       _num(h["prob_improvement"], "{:.2f}")]
                      for a, h in ((a, results["headline"][a]) for a in arms)])
    rate_arms = [base] + arms if base else arms
    hdr = ["benchmark", "category", "source", "format", "n", "MDE"] + [f"{a} rate" for a in rate_arms]
    hdr += [f"{a} − {base}" for a in arms]
    rows = []
    for b in sorted(results.get("benchmarks", []), key=lambda b: (b["targeted"], b["category"], b["name"])):
        r = [b["name"] + (" (T)" if b["targeted"] else ""), b["category"], b["source"], b["format"], str(b["n"]),
             "–" if b.get("mde") is None else f"{100 * b['mde']:.1f}"]
        for a in rate_arms:
            rt = b["rates"].get(a)
            r.append(f"{_pct(rt['aligned'])}" + (f" ({_pct(rt['unclear'])} uncl.)" if rt and rt.get("unclear") else "")
                     if rt else "–")
        for a in arms:
            v = b["vs_baseline"].get(a)
            r.append(f"{_sig(v)} {_pp(v['diff'])} {_ci_pp(v['ci'])}" if v else "–")
        rows.append(r)
    t["benchmarks"] = (hdr, rows)

    splits = results.get("splits", {})

    def split_table(key):
        groups = sorted({g for a in arms for g in splits.get(a, {}).get(key, {})})
        hdr = [key] + [f"{a}: improved / worsened / n" for a in arms] + [f"{a}: mean diff [95%]" for a in arms]
        rows = []
        for g in groups:
            r = [g]
            for a in arms:
                s = splits.get(a, {}).get(key, {}).get(g)
                r.append(f"{s['improved']} / {s['worsened']} / {s['benchmarks']}" if s and "improved" in s else "–")
            for a in arms:
                s = splits.get(a, {}).get(key, {}).get(g)
                r.append(f"{_pp(s.get('diff'))} {_ci_pp(s.get('ci'))}" if s else "–")
            rows.append(r)
        return hdr, rows

    if arms:
        for key in ("category", "family", "source", "format", "targeted"):
            t["split_" + key] = split_table(key)
        groups = sorted({g for a in arms for g in splits.get(a, {}).get("domain", {})})
        if groups:
            t["split_domain"] = (["domain"] + [f"{a}: mean diff [95%]" for a in arms],
                                 [[g] + [(lambda s: f"{_sig(s)} {_pp(s['diff'])} {_ci_pp(s['ci'])}" if s else "–")(
                                     splits.get(a, {}).get("domain", {}).get(g)) for a in arms] for g in groups])
    con = results.get("contrasts", {})
    if con:
        rows = []
        for name, c in con.items():
            if name == "did_control_world":
                rows.append(["treatment − baseline, default world", f"{_pp(c['default_diff'])} {_ci_pp(c['default_ci'])}", "", ""])
                rows.append(["treatment − baseline, control world", f"{_pp(c['control_diff'])} {_ci_pp(c['control_ci'])}",
                             f"{c['control_improved']} / {c['benchmarks']}", ""])
                rows.append(["difference in differences", f"{_pp(c['diff'])} {_ci_pp(c['ci'])}", "", _num(c["p"])])
            else:
                rows.append([name, f"{_pp(c.get('diff'))} {_ci_pp(c.get('ci'))}",
                             f"{c['improved']} / {c['untargeted']} (worsened {c['worsened']})", _num(c.get("p"))])
        t["contrasts"] = (["contrast", "mean diff (pp) [95%]", "improved / untargeted", "p"], rows)
    ps = results.get("persona_steering")
    if ps:
        rows = []
        for a, o in ps.items():
            vs = o.get("vs_baseline", {})
            rows.append([a, _pct(o.get("none")), _pct(o.get("harmful")), _pct(o.get("helpful")),
                         _triple(o.get("harm_drop_logodds")), _triple(o.get("help_gain_logodds")),
                         _triple(vs.get("harm_drop_diff")), _triple(vs.get("help_gain_diff")),
                         {True: "yes", False: "no"}.get(vs.get("selective"), "–")])
        t["steering"] = (["arm", "no persona", "harmful", "helpful", "harm drop (log-odds)", "help gain (log-odds)",
                          "harm drop vs baseline", "help gain vs baseline", "selective"], rows)
    ft = results.get("finetune_resistance")
    if ft:
        rows = []
        for a, o in ft.items():
            curve = ", ".join(f"{s}: {_pct(v, 0)}" for s, v in zip(o.get("steps", []), o.get("aligned", [])))
            vs = o.get("vs_baseline", {})
            rows.append([a, curve, _triple(o.get("drop_area"), 3), _triple(o.get("benign_drop_area"), 3),
                         _triple(o.get("net_drop_area"), 3), _triple(vs.get("drop_area_diff"), 3),
                         {True: "yes", False: "no"}.get(vs.get("degrades_less"), "–")])
        t["finetune"] = (["arm", "adversarial curve (step: aligned)", "drop area", "benign drop area",
                          "net (adv − benign)", "vs baseline", "degrades less"], rows)
    arms_meta = results.get("arms", {})
    if arms_meta:
        rows = []
        for a, m in arms_meta.items():
            comp = m.get("compute", {}) if isinstance(m, Mapping) else {}
            rows.append([a, str(len(m.get("seeds", []))) if isinstance(m, Mapping) else "–",
                         _si(comp.get("flops")), _si(comp.get("tokens")), str(comp.get("special_episodes", "–"))])
        t["compute"] = (["arm", "seeds", "padded FLOPs", "real tokens", "trait/placebo episodes"], rows)
    lc = results.get("learning_curves")
    if lc:
        rows = []
        for world, arms_c in lc.items():
            for a, c in arms_c.items():
                y = np.asarray(c["aligned"], float).mean(0)
                rows.append([world, a, "  ".join(f"{i}: {_pct(v)}" for i, v in zip(c["iterations"], y))])
        t["curves"] = (["world", "arm", "iteration: untargeted aligned (subsample, seed mean)"], rows)
    pp = results.get("persona_probe")
    if pp:
        rows = []
        for world, p in pp.items():
            base = p["base"]["mean_logit"]
            rows.append([world, "base", _pct(p.get("accuracy")), f"{base:+.3f}", "–"])
            for a, projs in p.get("arms", {}).items():
                m = float(np.mean([q["mean_logit"] for q in projs]))
                rows.append([world, a, "", f"{m:+.3f}", f"{m - base:+.3f}"])
        t["probe"] = (["world", "policy", "probe held-out accuracy", "mean projection (logit)", "change after RL"],
                      rows)
    caps = results.get("capabilities")
    if caps:
        rows = []
        for a, c in caps.items():
            rows.append([a, _pct(c.get("general_accuracy")) + (" " + _ci_pp(c["general_accuracy_ci"]).replace("+", "") if c.get("general_accuracy_ci") else ""),
                         _pct(c.get("over_refusal")) + (" " + _ci_pp(c["over_refusal_ci"]).replace("+", "") if c.get("over_refusal_ci") else "")])
        t["capabilities"] = (["arm", "general accuracy [95%]", "over-refusal on benign twins [95%]"], rows)
    return t


SECTIONS = [  # (table key, title, plot, blurb)
    ("benchmarks", "Per-benchmark results", None,
     "Aligned rate per arm (unclear responses count as not aligned; their rate in parentheses) and the difference "
     "from the baseline in percentage points with its 95% interval. ▲/▼: interval excludes 0; *: survives Holm. "
     "(T): targeted trait (in-distribution check). MDE: minimum detectable effect at 80% power."),
    ("split_category", "By category", "categories.png", None),
    ("split_family", "By family", None, "Benchmarks of one family are correlated; the sign test runs over families."),
    ("split_source", "Internal vs external (untargeted)", None, None),
    ("split_format", "By format (untargeted)", None, None),
    ("split_targeted", "Targeted vs untargeted", None, None),
    ("split_domain", "By domain (untargeted, instance-level)", None,
     "Instances pooled per domain; health_only's transfer to non-health domains is the point."),
    ("contrasts", "Contrasts", "contrasts.png",
     "treatment − placebo separates trait content from adding conversation data; the control world "
     "(persona coherence 0.5) should show no effect, so the difference in differences should be the whole effect."),
    ("steering", "Persona steering", "steering.png",
     "Shifts in log-odds from each arm's own no-persona rate. Selective = smaller harmful drop than the baseline "
     "while the helpful gain is not smaller by more than the non-inferiority margin."),
    ("finetune", "Fine-tuning resistance", "finetune.png",
     "Aligned rate after SFT on inaccurate medical advice (adversarial) and on accurate advice (benign control); "
     "drop area = mean drop from the arm's own step 0 over the sweep."),
    ("curves", "Learning curves", "curves.png",
     "Untargeted aligned rate on a small subsample at intermediate PPO iterations (0 = the base model)."),
    ("probe", "Linear probe of the persona latent", None,
     "A logistic probe fit on the base model's activations after a revealed persona (probes split); its mean "
     "projection on first-turn untargeted prompts before (base) and after RL. Trait RL that moves the shared "
     "latent raises it; the control world has no shared latent to move."),
    ("compute", "Compute per arm", None, None),
    ("capabilities", "Capabilities", None,
     "General-task accuracy and over-refusal on benign twins of the harmful-compliance prompts: an arm that "
     "'improves' by refusing everything shows up here."),
]


# --------------------------------------------------------------------------- markdown
def _md_table(hdr, rows):
    esc = lambda s: str(s).replace("|", "\\|")
    out = ["| " + " | ".join(map(esc, hdr)) + " |", "|" + "---|" * len(hdr)]
    out += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(out)


def _headline_text(results) -> str:
    prim = _primary(results)
    if prim is None:
        return "No compared arms."
    return results["headline"][prim].get("sentence") or ""


def render_markdown(results: Mapping, plots: Mapping) -> str:
    t = _tables(results)
    exp = results.get("experiment", {})
    lines = ["# Evaluation report", "", f"**{_headline_text(results)}**", ""]
    if "headline" in t:
        lines += [_md_table(*t["headline"]), ""]
    for p in ("summary.png", "forest.png"):
        if p in plots:
            lines += [f"![{p[:-4]}]({p})", ""]
    for key, title, plot, blurb in SECTIONS:
        if key not in t and not (plot and plot in plots):
            continue
        lines += [f"## {title}", ""]
        if blurb:
            lines += [blurb, ""]
        if plot and plot in plots:
            lines += [f"![{plot[:-4]}]({plot})", ""]
        if key in t:
            lines += [_md_table(*t[key]), ""]
    st = results.get("statistics", {})
    if st:
        lines += ["## Statistics", ""] + [f"- **{k}**: {v}" for k, v in st.items()] + [""]
    lines += ["## Experiment", "", "```json", json.dumps(exp, indent=1, sort_keys=True, default=str), "```", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- html
CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1280px;padding:12px 24px;color:#212121}
h1{font-size:22px;margin:6px 0}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
.headline{font-size:19px;padding:10px 14px;border-left:6px solid #2e7d32;background:#f1f8e9;margin:8px 0 10px}
.headline.neutral{border-color:#9e9e9e;background:#f5f5f5}.headline.bad{border-color:#c62828;background:#ffebee}
table{border-collapse:collapse;font-size:12px;margin:6px 0}th,td{border:1px solid #e0e0e0;padding:3px 6px;text-align:left;white-space:nowrap}
th{background:#fafafa;position:sticky;top:0}tr:nth-child(even) td{background:#fcfcfc}
td.up{color:#2e7d32;font-weight:600}td.down{color:#c62828;font-weight:600}
.first{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}.blurb{color:#555;font-size:13px;max-width:1000px}
img{max-width:100%}.scroll{overflow-x:auto}details{margin:8px 0}pre{font-size:11px;background:#fafafa;padding:8px;overflow-x:auto}
"""


def _html_table(hdr, rows):
    out = ["<div class='scroll'><table><thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in hdr) + "</tr></thead><tbody>"]
    for r in rows:
        cells = []
        for c in r:
            s = str(c)
            cls = " class='up'" if s.startswith("▲") else (" class='down'" if s.startswith("▼") else "")
            cells.append(f"<td{cls}>{html.escape(s)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _img(plots, name, alt):
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(plots[name]).decode()}'>"


def render_html(results: Mapping, plots: Mapping) -> str:
    t = _tables(results)
    prim = _primary(results)
    tone = "neutral"
    if prim is not None:
        h = results["headline"][prim]
        if h["improved"] > h["worsened"] and h["improved"] > 0:
            tone = ""
        elif h["worsened"] > h["improved"]:
            tone = "bad"
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             "<title>Evaluation report</title>", f"<style>{CSS}</style></head><body>",
             "<h1>Evaluation report: beneficial RL vs compute-matched baseline</h1>",
             f"<div class='headline {tone}'>{html.escape(_headline_text(results))}</div>"]
    parts.append("<div class='first'>")
    if "headline" in t:
        parts.append(_html_table(*t["headline"]))
    if "summary.png" in plots:
        parts.append(_img(plots, "summary.png", "improved / unchanged / worsened per arm"))
    parts.append("</div>")
    if "forest.png" in plots:
        parts.append(_img(plots, "forest.png", "forest plot of per-benchmark differences"))
    for key, title, plot, blurb in SECTIONS:
        if key not in t and not (plot and plot in plots):
            continue
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if blurb:
            parts.append(f"<p class='blurb'>{html.escape(blurb)}</p>")
        if plot and plot in plots:
            parts.append(_img(plots, plot, title))
        if key in t:
            parts.append(_html_table(*t[key]))
    st = results.get("statistics", {})
    if st:
        parts.append("<h2>Statistics</h2><ul class='blurb'>" + "".join(
            f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in st.items()) + "</ul>")
    parts.append("<h2>Experiment</h2><details><summary>configuration and provenance</summary><pre>"
                 + html.escape(json.dumps(results.get("experiment", {}), indent=1, sort_keys=True, default=str))
                 + "</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)


# --------------------------------------------------------------------------- writing
def write_report(results: Mapping, out_dir: str | os.PathLike) -> Path:
    """Write results.json, report.md, report.html and the PNGs into ``out_dir`` atomically.

    Everything is rendered into a temporary directory next to ``out_dir`` first; then the old
    directory (if any) is renamed aside, the new one renamed into place and the old one removed.
    On any error the temporary directory is deleted and the previous report is left as it was.
    Returns the output path."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=1, allow_nan=False)  # fails early on non-JSON content
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    old = None
    try:
        plots = make_plots(results)
        (tmp / "results.json").write_text(text + "\n")
        for name, data in plots.items():
            (tmp / name).write_bytes(data)
        (tmp / "report.md").write_text(render_markdown(results, plots))
        (tmp / "report.html").write_text(render_html(results, plots))
        for f in tmp.iterdir():  # flush file contents before the directory becomes visible
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rmdir(old)
            os.rename(out, old)
        try:
            os.rename(tmp, out)
        except BaseException:
            if old is not None:
                os.rename(old, out)  # put the previous report back
                old = None
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out
