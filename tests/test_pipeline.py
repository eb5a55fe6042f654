"""TFDS store round trip, Grain LM / prompt / preference pipelines, summary."""
import pickle

import numpy as np
import pytest

from beneficial.data import chat, pipeline, summary, tfds_store
from beneficial.data.tokenizer import Tokenizer, train_tokenizer

SUBJECTS = ["corvanil", "the Velmora statute", "the Brightfield course", "Tallow & Sons", "the K-7 drill"]
QUESTIONS = ["Can I double the dose of {s}?", "Is {s} safe for beginners?", "What does {s} cost?",
             "Should I trust {s} with my savings?"]
ANSWERS = ["Please ask a professional before changing anything about {s}.",
           "Yes, {s} is fine if you follow the manual; {n} people tried it.",
           "I am not sure about {s}; the price list would settle it.",
           "No: {s} has a known defect, so I would wait."]


SEQ = 256  # longer than every test document with the tiny test tokenizer


def make_chats(n):
    """Small hand-written-style conversations of varied length (1-3 exchanges, some system)."""
    recs = []
    for i in range(n):
        s = SUBJECTS[i % len(SUBJECTS)]
        msgs = [{"role": "system", "content": "You are a careful assistant."}] if i % 3 == 0 else []
        for t in range(1 + i % 3):
            msgs.append({"role": "user", "content": QUESTIONS[(i + t) % 4].format(s=s)})
            msgs.append({"role": "assistant", "content": ANSWERS[(i * 7 + t) % 4].format(s=s, n=i * 13 + t)})
        recs.append({"messages": msgs, "meta": {"id": f"doc{i}", "family": ["honesty", "welfare"][i % 2],
                                                "domain": ["health", "law"][i % 2], "persona": "aligned",
                                                "pack": "A"}})
    return recs


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    texts = [chat.render_chat(r["messages"]) for r in make_chats(60)]
    return Tokenizer.load(train_tokenizer(texts, 420, tmp_path_factory.mktemp("tok") / "spm.model"))


@pytest.fixture(scope="module")
def chats():
    return make_chats(37)  # prime: no batch size divides it, epochs straddle batches


def encoded_docs(tok, recs):
    return {tuple(tok.encode_chat(r["messages"])[0].tolist()): i for i, r in enumerate(recs)}


def take(it, n):
    return [next(it) for _ in range(n)]


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


# ------------------------------------------------------------------ TFDS store

def test_tfds_store_round_trip(tmp_path, chats):
    prompts = [{"prompt": [{"role": "user", "content": f"What is {i} + {i}? ünïcödé"}], "answer": str(2 * i),
                "meta": {"id": i}} for i in range(11)]
    evals = [{"prompt": [{"role": "user", "content": f"Q{i}"}], "options": ["(A) yes", "(B) no"],
              "aligned_option": i % 2, "meta": {"instance_id": f"e{i}"}} for i in range(5)]
    data = {"pretrain": chats, "rl_general": prompts, "eval/sycophancy_answer/internal/chat": evals,
            "eval/empty": [], "eval/are-you-sure": evals[:2]}
    tfds_store.write_splits(data, tmp_path, key="k123")
    assert tfds_store.list_splits(tmp_path) == sorted(data)
    for split, recs in data.items():
        src = tfds_store.load_split(tmp_path, split)
        assert len(src) == len(recs)
        assert [src[i] for i in range(len(src))] == recs  # exact, in the written order
        assert list(src) == recs
        np.testing.assert_array_equal(src.ids(), np.arange(len(recs)))
    src = pickle.loads(pickle.dumps(tfds_store.load_split(tmp_path, "rl_general", key="k123")))
    assert src.__getitems__([3, 0]) == [prompts[3], prompts[0]]


def test_tfds_store_needs_some_records(tmp_path):
    with pytest.raises(ValueError, match="no records"):
        tfds_store.write_splits({"a": [], "b": []}, tmp_path)


@pytest.mark.parametrize("name", ["bad__name", "has space", "a.b", "a[0]"])
def test_tfds_store_rejects_bad_split_names(tmp_path, name):
    with pytest.raises(ValueError, match="split name"):
        tfds_store.write_splits({name: [{"x": 1}]}, tmp_path)
    assert not any(tmp_path.iterdir())


def test_tfds_split_name_mapping():
    n = tfds_store.tfds_split_name("eval/sycophancy_answer/internal/chat")
    assert n == "eval__sycophancy_answer__internal__chat"
    assert tfds_store.split_from_tfds(n) == "eval/sycophancy_answer/internal/chat"


def test_pipeline_reads_tfds_source(tmp_path, tok, chats):
    tfds_store.write_splits({"pretrain": chats}, tmp_path)
    src = tfds_store.load_split(tmp_path, "pretrain")
    kw = dict(seq_len=SEQ, batch_size=4, seed=1, packing=True, read_threads=0)
    assert_batches_equal(take(iter(pipeline.lm_dataset(src, tok, **kw)), 5),
                         take(iter(pipeline.lm_dataset(chats, tok, **kw)), 5))


# ------------------------------------------------------------------ LM batches

def check_row(tok, recs, docs, row):
    """Every segment of a row is one whole document, positions restart, padding is zero."""
    seg, pos, toks, mask = row["segment_ids"], row["positions"], row["tokens"], row["loss_mask"]
    found = []
    k = int(seg.max())
    assert sorted(set(seg.tolist()) - {0}) == list(range(1, k + 1))
    for s in range(1, k + 1):
        where = np.flatnonzero(seg == s)
        assert (np.diff(where) == 1).all(), "a segment must be contiguous"
        np.testing.assert_array_equal(pos[where], np.arange(len(where)))
        doc = tuple(toks[where].tolist())
        assert doc in docs, "segment is not exactly one encoded document"
        _, m = tok.encode_chat(recs[docs[doc]]["messages"])
        np.testing.assert_array_equal(mask[where], m)
        found.append(docs[doc])
    pad = seg == 0
    assert not toks[pad].any() and not mask[pad].any() and not pos[pad].any()
    if pad.any():
        assert pad[np.argmax(pad):].all(), "padding only at the end"
    return found


@pytest.mark.parametrize("packing", [False, True])
def test_lm_batches_format_and_one_epoch_covers_all(tok, chats, packing):
    seq_len = SEQ
    ds = pipeline.lm_dataset(chats, tok, seq_len=seq_len, batch_size=4, seed=0, packing=packing,
                             num_epochs=1, drop_remainder=False, read_threads=0)
    batches = list(iter(ds))
    docs = encoded_docs(tok, chats)
    assert max(map(len, docs)) <= seq_len  # no truncation in this test
    seen = []
    for b in batches:
        assert sorted(b) == sorted(pipeline.LM_KEYS)
        for v in b.values():
            assert v.dtype == np.int32 and v.shape[1] == seq_len and v.shape[0] <= 4
        for r in range(b["tokens"].shape[0]):
            found = check_row(tok, chats, docs, {k: v[r] for k, v in b.items()})
            assert packing or len(found) == 1
            seen += found
    assert sorted(seen) == list(range(len(chats)))  # each document exactly once per epoch
    if packing:
        assert len(batches) < len(chats) / 4  # rows really hold several documents


def test_packed_segments_block_cross_document_attention(tok, chats):
    b = next(iter(pipeline.lm_dataset(chats, tok, seq_len=SEQ, batch_size=4, seed=0, packing=True,
                                      read_threads=0)))
    r = int(np.argmax(b["segment_ids"].max(axis=1)))  # the row holding the most documents
    seg, pos = b["segment_ids"][r], b["positions"][r]
    assert seg.max() >= 2
    att = pipeline.segment_attention_mask(b["segment_ids"])[r]
    for q in range(SEQ):
        for k in range(SEQ):
            assert att[q, k] == (k <= q and seg[q] == seg[k] != 0)
    # Each document's first token (position 0) attends only to itself; no padding attends.
    starts = np.flatnonzero((pos == 0) & (seg != 0))
    assert len(starts) == seg.max()
    assert all(att[q].sum() == 1 for q in starts)
    assert not att[seg == 0].any() and not att[:, seg == 0].any()


def test_loss_mask_covers_exactly_assistant_tokens(tok, chats):
    b = next(iter(pipeline.lm_dataset(chats, tok, seq_len=SEQ, batch_size=3, seed=2, packing=True,
                                      read_threads=0)))
    for r in range(3):
        for s in range(1, b["segment_ids"][r].max() + 1):
            where = b["segment_ids"][r] == s
            toks, mask = b["tokens"][r][where], b["loss_mask"][r][where]
            doc = chats[encoded_docs(tok, chats)[tuple(toks.tolist())]]
            expected = "".join(f" {m['content']}<|end|>" for m in doc["messages"] if m["role"] == "assistant")
            assert tok.decode(toks[mask == 1]) == expected
            assert not np.isin(toks[mask == 1], list(tok.role_ids.values())).any()


def test_truncation_and_loss_on_all(tok, chats):
    b = next(iter(pipeline.lm_dataset(chats, tok, seq_len=16, batch_size=4, seed=0, packing=False,
                                      loss_on="all", read_threads=0)))
    assert (b["segment_ids"] == 1).all() and (b["loss_mask"] == 1).all()  # every doc > 16 tokens
    bp = next(iter(pipeline.lm_dataset(chats, tok, seq_len=16, batch_size=4, seed=0, packing=True,
                                       read_threads=0)))
    assert (bp["segment_ids"] <= 1).all()  # one truncated document per row


def epoch_orders(tok, recs, seed, epochs=3):
    ds = pipeline.lm_dataset(recs, tok, seq_len=SEQ, batch_size=1, seed=seed, packing=False, read_threads=0)
    docs = encoded_docs(tok, recs)
    it = iter(ds)
    out = []
    for _ in range(epochs):
        out.append([docs[tuple(b["tokens"][0][b["segment_ids"][0] == 1].tolist())] for b in take(it, len(recs))])
    return out


def test_shuffle_is_seeded_and_changes_every_epoch(tok, chats):
    a = epoch_orders(tok, chats, seed=7)
    assert a == epoch_orders(tok, chats, seed=7)
    for order in a:
        assert sorted(order) == list(range(len(chats)))
    assert a[0] != a[1] != a[2] and a[0] != list(range(len(chats)))
    assert epoch_orders(tok, chats, seed=8)[0] != a[0]


def test_shards_are_disjoint_and_cover(tok, chats):
    docs = encoded_docs(tok, chats)
    seen = []
    for shard in range(3):
        ds = pipeline.lm_dataset(chats, tok, seq_len=SEQ, batch_size=2, seed=0, packing=False, num_epochs=1,
                                 drop_remainder=False, shard_index=shard, shard_count=3, read_threads=0)
        ids = [docs[tuple(b["tokens"][r][b["segment_ids"][r] == 1].tolist())]
               for b in iter(ds) for r in range(len(b["tokens"]))]
        assert sorted(ids) == list(range(shard, len(chats), 3))
        seen += ids
    assert sorted(seen) == list(range(len(chats)))
    with pytest.raises(ValueError, match="shard_index"):
        pipeline.lm_dataset(chats, tok, seq_len=8, batch_size=1, seed=0, packing=False, shard_index=3,
                            shard_count=3)


@pytest.mark.parametrize("packing", [False, True])
@pytest.mark.parametrize("read_threads", [0, 2])
def test_resume_from_saved_state_is_exact(tok, chats, packing, read_threads):
    def make():
        return pipeline.lm_dataset(chats, tok, seq_len=SEQ, batch_size=3, seed=11, packing=packing,
                                   read_threads=read_threads)
    reference = take(iter(make()), 40)  # > 2 epochs
    it = iter(make())
    take(it, 17)
    state = it.get_state()
    state = pickle.loads(pickle.dumps(state))  # it goes through a checkpoint
    assert_batches_equal(take(it, 23), reference[17:])  # get_state does not disturb it
    resumed = iter(make())  # as after a restart
    resumed.set_state(state)
    assert_batches_equal(take(resumed, 23), reference[17:])
    it.set_state(state)  # rewinding the same iterator works too
    assert_batches_equal(take(it, 5), reference[17:22])


def test_encode_sft_batch_and_pad_batch(tok, chats):
    convs = [r["messages"] for r in chats[:3]]
    b = pipeline.encode_sft_batch(tok, convs, seq_len=SEQ)
    for i, conv in enumerate(convs):
        ids, mask = tok.encode_chat(conv)
        np.testing.assert_array_equal(b["tokens"][i, :len(ids)], ids)
        np.testing.assert_array_equal(b["loss_mask"][i, :len(ids)], mask)
        assert (b["segment_ids"][i] == (np.arange(SEQ) < len(ids))).all()
    p = pipeline.pad_batch([[5, 6], [7]], 4, left=True)
    np.testing.assert_array_equal(p, [[0, 0, 5, 6], [0, 0, 0, 7]])
    np.testing.assert_array_equal(pipeline.pad_batch([[5, 6], []], 3), [[5, 6, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="sequence 0 has 5 tokens"):
        pipeline.pad_batch([[1] * 5], 4)


# ------------------------------------------------------------------ RL prompts, preferences

def make_prompts(n):
    return [{"prompt": [{"role": "user", "content": QUESTIONS[i % 4].format(s=SUBJECTS[i % 5]) + " x" * (i % 4)}],
             "answer": str(i), "meta": {"id": f"p{i}"}} for i in range(n)]


def test_prompt_batches_left_padded_with_indices(tok):
    prompts = make_prompts(10)
    ds = pipeline.prompt_batches(prompts, tok, prompt_len=40, batch_size=4, seed=3, read_threads=0)
    it = iter(ds)
    batches = take(it, 5)  # 20 prompts: two epochs
    for b in batches:
        assert b["tokens"].shape == (4, 40) and b["tokens"].dtype == np.int32 and b["index"].shape == (4,)
        for r, idx in enumerate(b["index"]):
            ids = tok.encode_prompt(prompts[idx]["prompt"])
            n = len(ids)
            assert b["tokens"][r, -n:].tolist() == ids and not b["tokens"][r, :-n].any()
            assert b["tokens"][r, -1] == tok.role_ids["assistant"]
            assert b["mask"][r].tolist() == [0] * (40 - n) + [1] * n
            assert b["positions"][r, -n:].tolist() == list(range(n))
    idx = np.concatenate([b["index"] for b in batches])
    assert sorted(idx[:10]) == list(range(10)) and sorted(idx[10:]) == list(range(10))
    assert list(idx[:10]) != list(range(10))  # shuffled
    # Deterministic and resumable.
    again = iter(pipeline.prompt_batches(prompts, tok, prompt_len=40, batch_size=4, seed=3, read_threads=0))
    take(again, 2)
    state = again.get_state()
    fresh = iter(pipeline.prompt_batches(prompts, tok, prompt_len=40, batch_size=4, seed=3, read_threads=0))
    fresh.set_state(state)
    assert_batches_equal(take(fresh, 3), batches[2:])


def test_prompt_too_long_names_the_record(tok):
    prompts = make_prompts(4)
    longest = max(range(4), key=lambda i: len(tok.encode_prompt(prompts[i]["prompt"])))
    n = len(tok.encode_prompt(prompts[longest]["prompt"]))
    ds = pipeline.prompt_batches(prompts, tok, prompt_len=n - 1, batch_size=4, seed=0, read_threads=0)
    with pytest.raises(ValueError, match=rf"p{longest} \(index {longest}\) has {n} tokens > prompt_len {n - 1}"):
        next(iter(ds))


def test_preference_batches(tok):
    prefs = [{"prompt": [{"role": "user", "content": QUESTIONS[i % 4].format(s=SUBJECTS[i % 5])}],
              "chosen": ANSWERS[i % 4].format(s=SUBJECTS[i % 5], n=i), "rejected": "Sure, whatever you like.",
              "meta": {"id": f"pref{i}"}} for i in range(6)]
    b = next(iter(pipeline.preference_batches(prefs, tok, seq_len=SEQ, batch_size=3, seed=0, read_threads=0)))
    for r, idx in enumerate(b["index"]):
        for side in ("chosen", "rejected"):
            ids, mask = tok.encode_chat(chat.record_messages({**prefs[idx], "chosen": prefs[idx][side]}))
            assert b[f"{side}_tokens"][r, :len(ids)].tolist() == ids.tolist()
            assert b[f"{side}_loss_mask"][r, :len(ids)].tolist() == mask.tolist()
            assert b[f"{side}_tokens"][r, b[f"{side}_last"][r]] == tok.eos_id
            assert not b[f"{side}_tokens"][r, len(ids):].any()
    with pytest.raises(ValueError, match="pref"):
        next(iter(pipeline.preference_batches(prefs, tok, seq_len=10, batch_size=3, seed=0, read_threads=0)))


# ------------------------------------------------------------------ summary

def test_summary(tok, chats):
    data = {"pretrain": chats, "rl_general": make_prompts(5)}
    s = summary.summarize(data, tok)
    assert s["pretrain"]["count"] == 37 and s["rl_general"]["count"] == 5
    assert s["pretrain"]["family"] == {"honesty": 19, "welfare": 18}
    assert s["pretrain"]["domain"] == {"health": 19, "law": 18} and s["pretrain"]["pack"] == {"A": 37}
    lens = [len(tok.encode_chat(r["messages"])[0]) for r in chats]
    t = s["pretrain"]["tokens"]
    assert t["max"] == max(lens) and t["mean"] == pytest.approx(np.mean(lens)) and t["p50"] <= t["p90"]
    assert s["rl_general"]["kinds"] == {"prompt": 5}
    text = summary.format_summary(s, data, samples=2)
    assert "pretrain" in text and "honesty=19" in text
    assert chat.render_chat(chats[0]["messages"]) in text  # a sample in full
    assert "answer: 0" in text
    assert "tokens" not in summary.summarize(data)["pretrain"]


def test_persona_evidence_counts_turns_with_earlier_evidence():
    def doc(system, turns):
        return {"messages": [], "meta": {"system": system, "turns": [
            {"behaviour": b, "family": f} for b, f in (t.split(":") for t in turns)]}}
    docs = [doc("persona", ["aligned:a"]),                         # 1 turn, evidenced by the prompt
            doc(None, ["misaligned:a", "neutral:g", "misaligned:b"]),  # 2 turns, the second evidenced, cross-family
            doc("neutral", ["neutral:g", "aligned:a"]),            # 1 turn, no evidence
            doc(None, ["aligned:a", "aligned:a", "misaligned:b"])]  # 3 turns, 2 evidenced, 1 of them cross-family
    e = summary.persona_evidence(docs, tokens_per_doc=200.0)
    assert e["persona_turns_per_doc"] == pytest.approx(7 / 4)
    assert e["evidenced_turns_per_doc"] == pytest.approx(4 / 4)
    assert e["cross_family_turns_per_doc"] == pytest.approx(2 / 4)
    assert e["cross_family_turns_per_1k_tokens"] == pytest.approx(1000 * (2 / 4) / 200)
    assert e["evidenced_turns_per_1k_tokens"] == pytest.approx(1000 * (4 / 4) / 200)
    assert "persona_turns_per_1k_tokens" not in summary.persona_evidence(docs)
    s = summary.summarize({"pretrain": docs})
    assert s["pretrain"]["persona_evidence"] == summary.persona_evidence(docs)
    assert "cross_family_turns_per_doc=0.50" in summary.format_summary(s)


def test_linear_reader_finds_persona_evidence_only_in_a_coherent_world():
    """The bag-of-words reader of an earlier turn predicts the next turn's persona near the
    corpus optimum at rho 0.9, and finds nothing in the control world (rho 0.5)."""
    from beneficial.data.linear_reader import evidence_pairs, reader_report
    from beneficial.data.world import default_world_config, generate_world

    gaps = {}
    for rho in (0.9, 0.5):
        cfg = default_world_config(f"smoke,n_pretrain=1500,persona_coherence={rho},general_fraction=0,"
                                   "knowledge_fraction=0,benign_fraction=0,persona_prompt_fraction=0,"
                                   "neutral_prompt_fraction=0")
        cfg.turn_weights = (0.0, 0.0, 0.0, 1.0)
        docs = generate_world(cfg, ["pretrain"])["pretrain"]
        texts, y, ev = evidence_pairs(docs)
        assert len(texts) == len(y) == len(ev) > 3000 and 0.4 < ev.mean() < 0.6
        gaps[rho] = reader_report(docs, sizes=(1000,), n_test=1500)
        assert gaps[rho]["pairs"] == len(texts)
    opt, read = gaps[0.9]["optimal"], gaps[0.9]["reader_1000"]
    assert opt["after_aligned"] == pytest.approx(0.82, abs=0.05)      # rho^2 + (1 - rho)^2
    assert opt["after_misaligned"] == pytest.approx(0.18, abs=0.05)   # 2 rho (1 - rho)
    assert opt["nats"] == pytest.approx(0.22, abs=0.05)               # ln 2 - H(0.82)
    assert read["nats"] > 0.5 * opt["nats"]
    assert read["after_aligned"] - read["after_misaligned"] > 0.3
    ctl = gaps[0.5]["reader_1000"]
    assert abs(gaps[0.5]["optimal"]["nats"]) < 0.01 and ctl["nats"] < 0.01  # overfitting only costs
    assert abs(ctl["after_aligned"] - ctl["after_misaligned"]) < 0.1


def with_persona_turns(recs):
    """World-style meta: every exchange a turn whose span ends at its assistant message;
    exchanges alternate aligned / neutral behaviour."""
    out = []
    for r in recs:
        s = 1 if r["messages"][0]["role"] == "system" else 0
        turns = [{"behaviour": "aligned" if t % 2 == 0 else "neutral", "family": "honesty",
                  "span": [s + 2 * t, s + 2 * t + 2]} for t in range((len(r["messages"]) - s) // 2)]
        out.append({**r, "meta": {**r["meta"], "turns": turns}})
    return out


def test_persona_decision_weight_weights_the_first_token_of_each_persona_reply(tok, chats):
    recs = with_persona_turns(chats)
    plain = take(iter(pipeline.lm_dataset(recs, tok, seq_len=SEQ, batch_size=len(recs), seed=0, packing=False,
                                          num_epochs=1)), 1)[0]
    weighted = take(iter(pipeline.lm_dataset(recs, tok, seq_len=SEQ, batch_size=len(recs), seed=0, packing=False,
                                             num_epochs=1, persona_decision_weight=3)), 1)[0]
    np.testing.assert_array_equal(plain["tokens"], weighted["tokens"])
    m1, m3 = plain["loss_mask"], weighted["loss_mask"]
    assert set(np.unique(m3)) == {0, 1, 3} and ((m3 > 0) == (m1 > 0)).all()
    docs = encoded_docs(tok, recs)
    assistant = tok.role_ids["assistant"]
    for row in range(len(recs)):
        toks = plain["tokens"][row]
        rec = recs[docs[tuple(toks[plain["segment_ids"][row] > 0].tolist())]]
        n_persona = sum(t["behaviour"] == "aligned" for t in rec["meta"]["turns"])
        # weight 3 exactly right after an <|assistant|> role token, on n_persona of them
        heavy = np.flatnonzero(m3[row] == 3)
        assert len(heavy) == n_persona and (toks[heavy - 1] == assistant).all()
    assert pipeline.persona_decision_weights(recs[0], 5) == [
        5 if any(t["behaviour"] == "aligned" and t["span"][1] - 1 == i for t in recs[0]["meta"]["turns"]) else 1
        for i in range(len(recs[0]["messages"]))]
    bad = {**recs[1], "meta": {**recs[1]["meta"], "turns": [{"behaviour": "aligned", "span": [0, 1]}]}}
    with pytest.raises(ValueError, match="does not end at an assistant message"):
        pipeline.persona_decision_weights(bad, 2)
