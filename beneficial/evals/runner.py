"""Run one policy on a list of benchmarks: generate + grade (chat, multi_turn, agentic) or
score options (mc), save every instance, return per-instance arrays.

    results = evaluate_policy(graphdef, params, tokenizer, benchmarks, eval_cfg, out_dir, seed=0)
    results[name] = {"aligned": [n] float, "unclear": [n] float, "ids": [...], "domains": [...]}
                    (+ "aligned_norm" for mc: the length-normalised variant)

With samples_per_instance = k > 1, "aligned" and "unclear" are the fractions of the k
samples. Files: out_dir/<name with '/' -> '__'>.jsonl, one row per instance (its
prompt, response(s), grade(s) and score), written atomically when the benchmark is
complete. A file whose ids and settings match the request is reused (resume); a stale
one is recomputed.

Batching: every pending generation request of every benchmark goes through one stream of
fixed-shape batches ([batch_size, prompt bucket] -> max_new_tokens), ordered by prompt
bucket then benchmark, and a benchmark's file is written as soon as its last request is
done. Prompt buckets are prompt_len * 2^k <= max_prompt_len, so a suite compiles one
sampler per bucket (two or three) and a few mc scorers (mc.py: packed rows and
prefix-shared KV-cache layouts, a compile per shape). Single-process: with several JAX
processes every process computes the same batches and process 0 writes the files.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pathlib
import time
import zlib
from typing import Callable, Sequence

import jax
import numpy as np
from tqdm import tqdm

from beneficial.evals import mc
from beneficial.evals.registry import Benchmark
from beneficial.models.sampler import SamplingConfig, make_generate

log = logging.getLogger("beneficial")

FILE_VERSION = "1"

# persona: None, a fixed system prompt, or f(benchmark name, instance id) -> system prompt
Persona = None | str | Callable[[str, str], str]


# ---------------------------------------------------------------- files
def benchmark_file(out_dir, name: str) -> pathlib.Path:
    return pathlib.Path(out_dir) / (name.replace("/", "__") + ".jsonl")


def _write_jsonl_atomic(path: pathlib.Path, rows: Sequence[dict]) -> None:
    if jax.process_index() != 0:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_jsonl(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _settings(b: Benchmark, cfg, persona_tag: str | None, seed: int) -> dict:
    """What determines a benchmark file's content (besides the policy): a stale file is redone."""
    s = {"v": FILE_VERSION, "format": b.format, "persona": persona_tag}
    if b.generated:
        s.update(temperature=float(cfg.temperature), greedy=bool(cfg.greedy), samples=int(cfg.samples_per_instance),
                 max_new_tokens=int(cfg.max_new_tokens), seed=int(seed),
                 top_k=int(cfg.get("top_k", 0)), top_p=float(cfg.get("top_p", 1.0)))
    return s


def _fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def _load_finished(path: pathlib.Path, ids: list, fp: str) -> list[dict] | None:
    if not path.exists():
        return None
    try:
        rows = read_jsonl(path)
    except (OSError, json.JSONDecodeError):
        return None
    if [r.get("id") for r in rows] != list(ids) or any(r.get("settings") != fp for r in rows):
        log.info("eval: %s is stale (other instances or settings); recomputing", path.name)
        return None
    return rows


def _arrays(rows: Sequence[dict], with_norm: bool) -> dict:
    out = {"aligned": np.asarray([r["aligned"] for r in rows], np.float64),
           "unclear": np.asarray([r["unclear"] for r in rows], np.float64),
           "ids": [r["id"] for r in rows], "domains": [r.get("domain") for r in rows]}
    if with_norm:
        out["aligned_norm"] = np.asarray([r["aligned_norm"] for r in rows], np.float64)
    return out


# ---------------------------------------------------------------- prompts
def with_persona(messages: Sequence[dict], system: str | None) -> list[dict]:
    """Messages under a persona system prompt: a new first system turn, or, when the
    conversation already opens with a system turn (an operator context), the persona
    sentence in front of it."""
    msgs = [dict(m) for m in messages]
    if not system:
        return msgs
    if msgs and msgs[0]["role"] == "system":
        msgs[0]["content"] = f"{system} {msgs[0]['content']}"
        return msgs
    return [{"role": "system", "content": system}] + msgs


def _persona_for(persona: Persona, name: str, iid: str) -> str | None:
    if persona is None or isinstance(persona, str):
        return persona
    return persona(name, iid)


# ---------------------------------------------------------------- generation stream
_GENERATORS: dict = {}


def _generator(graphdef, sc: SamplingConfig):
    key = (mc.graph_key(graphdef), sc)
    if key not in _GENERATORS:   # the graphdef is kept alive with its program (identity keys)
        _GENERATORS[key] = (graphdef, make_generate(graphdef, sc))
    return _GENERATORS[key][1]


def generate_stream(graphdef, params, tokenizer, requests: Sequence[tuple], cfg, seed: int,
                    on_done: Callable[[int, str], None], desc: str = "generate", put=lambda x: x) -> None:
    """requests: (prompt messages, tag) pairs; calls on_done(request index, response text)
    per request, in batches of cfg.batch_size at fixed shapes per prompt bucket.

    A request's sampling key is fold_in(seed key, tag) when its tag is an int (a stable id
    such as `request_id(benchmark, instance, sample)`), else its index: with stable ids the
    responses do not depend on which other requests are pending, so an evaluation resumed
    after a kill reproduces an uninterrupted one exactly."""
    sc = SamplingConfig(max_new_tokens=int(cfg.max_new_tokens), eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id,
                        temperature=1.0 if cfg.greedy else float(cfg.temperature), greedy=bool(cfg.greedy),
                        top_k=int(cfg.get("top_k", 0)), top_p=float(cfg.get("top_p", 1.0)))
    gen = _generator(graphdef, sc)
    ids = [tokenizer.encode_prompt(m) for m, _ in requests]
    buckets: dict = {}
    for j, row in enumerate(ids):
        p = mc.bucket(len(row), int(cfg.prompt_len), int(cfg.max_prompt_len), "eval.max_prompt_len")
        buckets.setdefault(p, []).append(j)
    bs = int(cfg.batch_size)
    if bs % getattr(put, "multiple", 1):
        raise ValueError(f"eval.batch_size={bs} must be a multiple of the data-parallel size {put.multiple}")
    key = jax.random.key(seed)
    n_batches = sum(-(-len(v) // bs) for v in buckets.values())
    with tqdm(total=n_batches, desc=desc, leave=False, dynamic_ncols=True, disable=n_batches < 2) as bar:
        for p, idx in sorted(buckets.items()):
            for start in range(0, len(idx), bs):
                chunk = idx[start:start + bs]
                tokens = np.full((bs, p), tokenizer.pad_id, np.int32)
                for r, j in enumerate(chunk + [chunk[-1]] * (bs - len(chunk))):  # pad to the compiled shape
                    tokens[r, p - len(ids[j]):] = ids[j]
                rows = chunk + [chunk[-1]] * (bs - len(chunk))
                keys = jax.vmap(lambda t: jax.random.fold_in(key, t))(
                    np.asarray([_tag_id(requests[j][1], j) for j in rows], np.uint32))
                res = jax.device_get(gen(params, put(tokens), keys))
                for r, j in enumerate(chunk):
                    on_done(j, tokenizer.decode_response(res["tokens"][r][res["mask"][r].astype(bool)]))
                bar.update(1)


def request_id(benchmark: str, instance_id, sample: int) -> int:
    """A stable 31-bit id of one generation request (its sampling key derives from it)."""
    return zlib.crc32(f"{benchmark}\x00{instance_id}\x00{sample}".encode()) & 0x7FFFFFFF


def _tag_id(tag, index: int) -> int:
    return int(tag) if isinstance(tag, (int, np.integer)) and not isinstance(tag, bool) else int(index)


# ---------------------------------------------------------------- the policy evaluation
def evaluate_policy(graphdef, params, tokenizer, benchmarks: Sequence[Benchmark], eval_cfg, out_dir, *,
                    persona: Persona = None, persona_tag: str | None = None, seed: int | None = None,
                    n_per_benchmark: int | dict | None = None, exclude_domains: Sequence[str] = (),
                    desc: str = "eval", mesh=None, rules=None) -> dict:
    """Evaluate one policy; returns {benchmark name: {"aligned", "unclear", "ids", "domains"
    (, "aligned_norm")}}. `n_per_benchmark` (an int, or {name: int}) overrides
    eval_cfg.n_per_benchmark (0 = all);
    `persona` adds a system prompt (see `with_persona`), `persona_tag` names it in the
    files' settings (defaults to the fixed prompt's text or 'custom'). With a `mesh` (and its
    logical-axis `rules`), batches are split over the data axes.

    With params=None nothing is computed: the finished results are returned when every
    benchmark's file is complete and current, else None (see `finished_results`)."""
    with _placement(mesh, rules) as put:
        return _evaluate(graphdef, params, tokenizer, benchmarks, eval_cfg, out_dir, persona, persona_tag, seed,
                         n_per_benchmark, exclude_domains, desc, put)


@contextlib.contextmanager
def _placement(mesh, rules):
    """Yields put(batch array) -> array placed for the jitted programs; put.multiple is the
    number of shards of the batch axis (batch sizes must be multiples of it)."""
    if mesh is None:
        put = lambda x: x  # noqa: E731
        put.multiple = 1
        yield put
        return
    from beneficial import sharding
    rules = [tuple(r) for r in (rules or sharding.DEFAULT_RULES)]
    with sharding.use_rules(mesh, rules):
        def put(x):
            return jax.device_put(x, sharding.batch_sharding(mesh, rules, np.ndim(x)))
        put.multiple = int(np.prod([mesh.shape[a] for a in _batch_axes(rules)]))
        yield put


def _batch_axes(rules) -> list:
    target = dict(rules).get("batch")
    if target is None:
        return []
    return [target] if isinstance(target, str) else list(target)


def _evaluate(graphdef, params, tokenizer, benchmarks, eval_cfg, out_dir, persona, persona_tag, seed,
              n_per_benchmark, exclude_domains, desc, put) -> dict:
    cfg = eval_cfg
    seed = int(cfg.seed if seed is None else seed)
    n_of = n_per_benchmark if isinstance(n_per_benchmark, dict) else {}
    n_default = int(cfg.n_per_benchmark if n_per_benchmark is None or isinstance(n_per_benchmark, dict)
                    else n_per_benchmark)
    out_dir = pathlib.Path(out_dir)
    if persona_tag is None and persona is not None:
        persona_tag = persona if isinstance(persona, str) else "custom"
    t0 = time.perf_counter()
    results: dict = {}
    pending_gen, pending_mc = [], []   # (benchmark, ids, records, prompts, fp)
    for b in benchmarks:
        ids, recs = b.select(int(n_of.get(b.name, n_default)), int(cfg.seed), exclude_domains=exclude_domains)
        if not ids:
            log.warning("eval: %s has no instances after filtering; skipped", b.name)
            continue
        fp = _fingerprint(_settings(b, cfg, persona_tag, seed))
        path = benchmark_file(out_dir, b.name)
        rows = _load_finished(path, ids, fp)
        if rows is not None:
            results[b.name] = _arrays(rows, b.format == "mc")
            continue
        if params is None:
            return None
        prompts = [with_persona(r["prompt"], _persona_for(persona, b.name, i)) for i, r in zip(ids, recs)]
        (pending_mc if b.format == "mc" else pending_gen).append((b, ids, recs, prompts, fp))
    # mc: pooled over benchmarks (shape groups fill their batches), in pools of
    # ~mc_pool instances; each benchmark's file is written when its pool is done.
    pool, size = [], 0
    for j, item in enumerate(pending_mc):
        pool.append(item)
        size += len(item[1])
        if size >= int(cfg.get("mc_pool", 4000)) or j == len(pending_mc) - 1:
            _run_mc(graphdef, params, tokenizer, pool, cfg, out_dir, results, put)
            pool, size = [], 0
    if pending_gen:
        _run_generated(graphdef, params, tokenizer, pending_gen, cfg, seed, out_dir, results, desc, put)
    log.info("%s: %d benchmarks (%d mc, %d generated computed) in %.1fs -> %s", desc, len(results),
             len(pending_mc), len(pending_gen), time.perf_counter() - t0, out_dir)
    return {b.name: results[b.name] for b in benchmarks if b.name in results}


def finished_results(benchmarks: Sequence[Benchmark], eval_cfg, out_dir, **kw) -> dict | None:
    """evaluate_policy's results when they are all on disk already (same arguments), else None."""
    return evaluate_policy(None, None, None, benchmarks, eval_cfg, out_dir, **kw)


def _run_mc(graphdef, params, tokenizer, pool, cfg, out_dir, results, put) -> None:
    flat = [dict(r, prompt=p) for (_, _, recs, prompts, _) in pool for r, p in zip(recs, prompts)]
    scored = mc.score_mc(graphdef, params, tokenizer, flat,
                         mode=str(cfg.mc_mode), batch_rows=int(cfg.mc_batch_rows), pack_len=int(cfg.mc_pack_len),
                         max_len=int(cfg.mc_max_len), prompt_len=int(cfg.prompt_len),
                         option_len=int(cfg.mc_option_len), put=put, multiple=put.multiple)
    at = 0
    for b, ids, recs, prompts, fp in pool:
        rows = []
        for iid, r, p, s in zip(ids, recs, prompts, scored[at:at + len(ids)]):
            aligned, mis = mc.aligned_sets(r)
            rows.append({"id": iid, "benchmark": b.name, "domain": (r.get("meta") or {}).get("domain"),
                         "prompt": p, "options": list(r["options"]), "aligned_options": sorted(aligned),
                         "misaligned_options": sorted(mis) if mis is not None else None,
                         "logprob": s["logprob"], "n_tokens": s["n_tokens"], "boundary": s["boundary"],
                         "choice": s["choice"], "grade": s["grade"], "choice_norm": s["choice_norm"],
                         "grade_norm": s["grade_norm"], "aligned": float(s["grade"] == "aligned"),
                         "unclear": float(s["grade"] == "unclear"),
                         "aligned_norm": float(s["grade_norm"] == "aligned"), "settings": fp})
        at += len(ids)
        _write_jsonl_atomic(benchmark_file(out_dir, b.name), rows)
        results[b.name] = _arrays(rows, True)


def _run_generated(graphdef, params, tokenizer, pending, cfg, seed, out_dir, results, desc, put) -> None:
    k = int(cfg.samples_per_instance)
    if k < 1:
        raise ValueError(f"eval.samples_per_instance must be >= 1, got {k}")
    requests, owner = [], []   # owner[j] = (pending index, instance index, sample index)
    for bi, (b, ids, recs, prompts, fp) in enumerate(pending):
        for ii, p in enumerate(prompts):
            for s in range(k):
                requests.append((p, request_id(b.name, ids[ii], s)))
                owner.append((bi, ii, s))
    responses = [[[None] * k for _ in item[1]] for item in pending]
    remaining = [len(item[1]) * k for item in pending]

    def finish(bi):
        b, ids, recs, prompts, fp = pending[bi]
        rows = []
        for iid, r, p, resp in zip(ids, recs, prompts, responses[bi]):
            grades = [b.grade(r, t) for t in resp]
            rows.append({"id": iid, "benchmark": b.name, "domain": (r.get("meta") or {}).get("domain"),
                         "prompt": p, "responses": resp, "grades": grades,
                         "aligned": float(np.mean([g == "aligned" for g in grades])),
                         "unclear": float(np.mean([g == "unclear" for g in grades])),
                         "settings": fp})
        _write_jsonl_atomic(benchmark_file(out_dir, b.name), rows)
        results[b.name] = _arrays(rows, False)

    def on_done(j, text):
        bi, ii, s = owner[j]
        responses[bi][ii][s] = text
        remaining[bi] -= 1
        if remaining[bi] == 0:
            finish(bi)

    generate_stream(graphdef, params, tokenizer, requests, cfg, seed, on_done, desc=desc, put=put)


# ---------------------------------------------------------------- capabilities
def evaluate_capabilities(graphdef, params, tokenizer, data_dir, eval_cfg, out_dir, *, seed: int | None = None,
                          mesh=None, rules=None) -> dict:
    """{"general_accuracy": [n] 0/1 per general task, "over_refusal": [n] 0/1 per benign
    twin of a harmful-compliance prompt (1 = the policy refused it)}; files under out_dir."""
    from beneficial.evals.registry import capability_benchmarks
    caps = capability_benchmarks(data_dir)
    res = evaluate_policy(graphdef, params, tokenizer, [caps["general"], caps["benign"]], eval_cfg, out_dir,
                          seed=seed, desc="eval: capabilities", mesh=mesh, rules=rules,
                          n_per_benchmark={caps["general"].name: int(eval_cfg.n_general),
                                           caps["benign"].name: int(eval_cfg.n_benign)})
    if res is None:   # params=None and not on disk
        return None
    out = {}
    if "capabilities/general" in res:
        out["general_accuracy"] = res["capabilities/general"]["aligned"]
    if "capabilities/benign" in res:
        r = res["capabilities/benign"]
        out["over_refusal"] = 1.0 - r["aligned"] - r["unclear"]   # graded misaligned = refused
    return out
