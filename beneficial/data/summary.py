"""Dataset summary: counts by split and provenance, token lengths, sample conversations.

Used to check balance (personas, domains, families, answer positions) and to size
seq_len / prompt_len from the token-length percentiles.
"""
from __future__ import annotations

import collections
from typing import Any, Sequence

import numpy as np

from beneficial.data import chat
from beneficial.data.linear_reader import reader_report

# summary field -> meta keys it is read from (first present wins); list values count each item.
FIELDS = {
    "family": ("family", "families"),
    "domain": ("domain", "domains"),
    "persona": ("persona",),
    "pack": ("pack", "template_pack"),
    "aligned_option": ("aligned_option",),
}
MAX_TOKENIZED = 5000  # per split; evenly spaced records beyond that (lengths are a statistic)


def record_kind(r: dict) -> str:
    if "messages" in r:
        return "chat"
    if "chosen" in r:
        return "preference"
    if "options" in r:
        return "multiple_choice"
    if "prompt" in r:
        return "prompt"
    return "other"


def _field_values(r: dict, keys: Sequence[str]) -> list:
    meta = r.get("meta") or {}
    for k in keys:
        v = meta.get(k, r.get(k)) if k == "aligned_option" else meta.get(k)
        if v is not None:
            return [str(x) for x in v] if isinstance(v, (list, tuple)) else [str(v)]
    return []


def _num_tokens(tokenizer, r: dict) -> int:
    if "messages" in r or "chosen" in r:
        return len(tokenizer.encode_chat(chat.record_messages(r))[0])
    if "prompt" in r:
        return len(tokenizer.encode_prompt(r["prompt"]))
    return 0


def summarize(records_by_split: dict[str, Sequence[dict]], tokenizer=None) -> dict[str, dict[str, Any]]:
    """{split: {"count", "kinds", <field>: {value: count}, "tokens"?: {mean, p50, p90, max, n}}}."""
    out = {}
    for split, recs in records_by_split.items():
        n = len(recs)
        s: dict[str, Any] = {"count": n,
                             "kinds": dict(collections.Counter(record_kind(recs[i]) for i in range(n)))}
        for field, keys in FIELDS.items():
            c = collections.Counter(v for i in range(n) for v in _field_values(recs[i], keys))
            if c:
                s[field] = dict(sorted(c.items()))
        if tokenizer is not None and n:
            idx = np.unique(np.linspace(0, n - 1, min(n, MAX_TOKENIZED)).astype(int))
            lens = np.asarray([_num_tokens(tokenizer, recs[int(i)]) for i in idx])
            s["tokens"] = {"mean": float(lens.mean()), "p50": float(np.percentile(lens, 50)),
                           "p90": float(np.percentile(lens, 90)), "max": int(lens.max()), "n": int(len(lens))}
        if n and "messages" in recs[0] and "turns" in (recs[0].get("meta") or {}):  # pretraining documents
            docs = [recs[i] for i in range(n)]
            s["persona_evidence"] = persona_evidence(docs, s["tokens"]["mean"] if "tokens" in s else None)
            if all("span" in t and "family" in t for r in docs for t in r["meta"]["turns"]):  # world documents
                s["persona_reader"] = reader_report(docs)
        out[split] = s
    return out


def is_persona_turn(turn: dict) -> bool:
    """A turn where the assistant shows aligned or misaligned behaviour (not a general, knowledge
    or benign episode): the turns that can teach persona inference."""
    return turn.get("behaviour") in ("aligned", "misaligned")


def persona_evidence(docs: Sequence[dict], tokens_per_doc: float | None = None) -> dict[str, float]:
    """How much a pretraining corpus teaches persona inference: persona turns (aligned or
    misaligned behaviour) per document, those with earlier evidence of the persona in the
    same document (a persona system prompt or an earlier persona turn), those after an
    earlier persona turn of *another* family (the cross-family decisions; counted where turns
    name their family), and all per 1000 tokens when the mean document length is known. Only
    turns with evidence carry the gradient that teaches the model to read a persona from its
    context; docs/persona_latent.md relates the onset of cross-family inference to how many
    cross-family decisions the model has seen (necessary there, not sufficient)."""
    turns = evidenced = cross = 0
    for r in docs:
        seen = r["meta"].get("system") == "persona"
        families = set()
        for t in r["meta"]["turns"]:
            if is_persona_turn(t):
                turns += 1
                evidenced += seen
                seen = True
                if "family" in t:
                    cross += bool(families - {t["family"]})
                    families.add(t["family"])
    n = max(len(docs), 1)
    out = {"persona_turns_per_doc": turns / n, "evidenced_turns_per_doc": evidenced / n,
           "cross_family_turns_per_doc": cross / n}
    if tokens_per_doc:
        for k in list(out):
            out[k.replace("_per_doc", "_per_1k_tokens")] = 1000 * out[k] / tokens_per_doc
    return out


def render_record(r: dict) -> str:
    """A record in full, as readable text."""
    kind = record_kind(r)
    if kind == "chat":
        text = chat.render_chat(r["messages"])
    else:
        text = chat.render_chat(r.get("prompt", []))
        if kind == "preference":
            text += f"\n  chosen:   {r['chosen']}\n  rejected: {r['rejected']}"
        if "options" in r:
            text += "".join(f"\n  option {i}: {o}" for i, o in enumerate(r["options"]))
            if "aligned_option" in r:
                text += f"\n  aligned option: {r['aligned_option']}"
        if "answer" in r:
            text += f"\n  answer: {r['answer']}"
    if r.get("meta"):
        text += f"\n  meta: {r['meta']}"
    return text


def _counts(d: dict, top: int = 8) -> str:
    items = sorted(d.items(), key=lambda kv: -kv[1])
    s = ", ".join(f"{k}={v}" for k, v in items[:top])
    return s + (f", ... ({len(items) - top} more)" if len(items) > top else "")


def format_summary(summary: dict[str, dict], records_by_split: dict[str, Sequence[dict]] | None = None,
                   *, samples: int = 3) -> str:
    """A table (split, count, token lengths), breakdowns, then `samples` records in full."""
    w = max([len("split"), *map(len, summary)])
    lines = [f"{'split':<{w}}  {'count':>7}  {'tok mean':>8}  {'p50':>6}  {'p90':>6}  {'max':>6}"]
    for split, s in summary.items():
        t = s.get("tokens")
        tok = (f"{t['mean']:>8.1f}  {t['p50']:>6.0f}  {t['p90']:>6.0f}  {t['max']:>6d}" if t
               else f"{'-':>8}  {'-':>6}  {'-':>6}  {'-':>6}")
        lines.append(f"{split:<{w}}  {s['count']:>7d}  {tok}")
    lines.append("")
    for split, s in summary.items():
        lines.append(f"{split}: kinds: {_counts(s['kinds'])}")
        for field in FIELDS:
            if field in s:
                lines.append(f"  {field}: {_counts(s[field])}")
        if "persona_evidence" in s:
            lines.append("  persona evidence: " + ", ".join(f"{k}={v:.2f}" for k, v in s["persona_evidence"].items()))
        if "optimal" in s.get("persona_reader", {}):
            r = s["persona_reader"]
            label = {k: "optimal" if k == "optimal" else f"reader on {k[len('reader_'):]} pairs" for k in r}
            cells = [f"{label[k]}: {v['nats']:.3f} nats, P(aligned) {v['after_aligned']:.2f} / {v['after_misaligned']:.2f}"
                     for k, v in r.items() if isinstance(v, dict)]
            lines.append(f"  persona reader (earlier turn's words -> next turn, {r['pairs']} pairs; "
                         "after an aligned / a misaligned turn): " + "; ".join(cells))
    if records_by_split and samples > 0:
        lines.append("")
        shown = 0
        for split, recs in records_by_split.items():
            if shown >= samples:
                break
            if len(recs):
                lines += [f"--- sample from {split} ---", render_record(recs[0]), ""]
                shown += 1
    return "\n".join(lines)
