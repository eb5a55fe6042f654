"""Two runs' pretraining corpora side by side: what differs between a world that formed the
persona latent and one that did not (docs/persona_latent.md).

    python launch/compare_corpora.py RUN_A RUN_B [--docs=20000]

RUN_A and RUN_B are run directories (each with one finished `cache/data-*` and `cache/tokenizer-*`).
Printed for the first `--docs` documents of each `pretrain` split: system prompts and behaviours;
per family its episodes, distinct user texts, distinct aligned and misaligned replies and their mean
lengths in characters; and, with each run's own tokenizer, tokens per document, per persona user
turn and per persona reply.
"""
import argparse
import collections
import pathlib
import statistics

import sentencepiece as spm

from beneficial.data.chat import record_messages, render_chat
from beneficial.data.stage import load

PERSONA = ("aligned", "misaligned")


def finished(run: pathlib.Path, stage: str) -> pathlib.Path:
    dirs = [p for p in sorted((run / "cache").glob(f"{stage}-*")) if (p / "DONE").exists()]
    if len(dirs) != 1:
        raise SystemExit(f"{run}: expected one finished cache/{stage}-* directory, found {[p.name for p in dirs]}")
    return dirs[0]


def corpus_stats(run: pathlib.Path, n_docs: int) -> dict:
    docs = load(finished(run, "data"), "pretrain")
    sp = spm.SentencePieceProcessor(model_file=str(finished(run, "tokenizer") / "spm.model"))
    s = {"system": collections.Counter(), "behaviour": collections.Counter(), "episodes": collections.Counter(),
         "users": collections.defaultdict(set), "replies": collections.defaultdict(set),
         "chars": collections.defaultdict(list), "doc_tokens": [], "user_tokens": [], "reply_tokens": []}
    for i in range(min(n_docs, len(docs))):
        r = docs[i]
        s["system"][str(r["meta"].get("system"))] += 1
        if i < 3000:
            s["doc_tokens"].append(len(sp.encode(render_chat(record_messages(r)))))
        for t in r["meta"]["turns"]:
            fam, beh = t["family"], t["behaviour"]
            s["episodes"][fam] += 1
            s["behaviour"][beh] += 1
            a, b = t["span"]
            for m in r["messages"][a:b]:
                if m["role"] == "user":
                    s["users"][fam].add(m["content"])
                else:
                    s["replies"][fam, beh].add(m["content"])
                    s["chars"][fam, beh].append(len(m["content"]))
                if beh in PERSONA and i < 1000:
                    s["user_tokens" if m["role"] == "user" else "reply_tokens"].append(len(sp.encode(m["content"])))
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_a", type=pathlib.Path)
    ap.add_argument("run_b", type=pathlib.Path)
    ap.add_argument("--docs", type=int, default=20000)
    args = ap.parse_args()
    A, B = corpus_stats(args.run_a, args.docs), corpus_stats(args.run_b, args.docs)
    print(f"A = {args.run_a}, B = {args.run_b}; first {args.docs} pretraining documents; cells read A/B")
    for key in ("system", "behaviour"):
        print(f"{key}: " + ", ".join(f"{k} {A[key][k]}/{B[key][k]}" for k in sorted(set(A[key]) | set(B[key]))))
    mean = lambda xs: f"{statistics.mean(xs):.0f}" if xs else "-"
    print(f"{'family':27s} {'episodes':>11s} {'user texts':>11s} {'al. replies':>11s} {'mis. replies':>12s}"
          f" {'al. chars':>10s} {'mis. chars':>10s}")
    for fam in sorted(set(A["episodes"]) | set(B["episodes"])):
        cell = lambda f: f"{f(A)}/{f(B)}"
        print(f"{fam:27s} {cell(lambda S: S['episodes'][fam]):>11s} {cell(lambda S: len(S['users'][fam])):>11s}"
              f" {cell(lambda S: len(S['replies'][fam, 'aligned'])):>11s} {cell(lambda S: len(S['replies'][fam, 'misaligned'])):>12s}"
              f" {cell(lambda S: mean(S['chars'][fam, 'aligned'])):>10s} {cell(lambda S: mean(S['chars'][fam, 'misaligned'])):>10s}")
    for key, what in (("doc_tokens", "tokens per document (3000 docs)"),
                      ("user_tokens", "tokens per persona user turn (1000 docs)"),
                      ("reply_tokens", "tokens per persona reply (1000 docs)")):
        print(f"{what}: {statistics.mean(A[key]):.1f}/{statistics.mean(B[key]):.1f}")


if __name__ == "__main__":
    main()
