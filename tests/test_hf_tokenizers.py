"""Tokenizers of real models (interop/tokenizers.py) on tiny tokenizer files made here: a
Gemma-style SentencePiece model and byte-level BPE tokenizer.json files with Llama 3's and
Qwen's special tokens. Round trips, chat templates, EOS / pad ids, loss masks."""
import io
import pickle

import numpy as np
import pytest
import sentencepiece as spm
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from beneficial.interop.tokenizers import (CHATML, GEMMA, LLAMA3, HFTokenizer, SentencePieceTokenizer,
                                           get_template, load_tokenizer)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Please don't double the dose without asking your doctor first.",
    "Weather today: sunny, 21 degrees; tomorrow rain.",
    "Ünïcödé text, emoji 🙂 and tabs\tand  double spaces.",
    "You are a careful assistant. Hello there, how can I help?",
] * 20
CHAT = [
    {"role": "system", "content": "You are a careful assistant."},
    {"role": "user", "content": "Can I double the dose?"},
    {"role": "assistant", "content": "Please ask your doctor first."},
]
TEXTS = ["Hello there", "Ünïcödé 🙂 mixed\ttabs  and\nnewlines", " leading space", "digits 12345"]

LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                   "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|start_header_id|>",
                   "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>"]
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _bpe(tmp_path, specials, name):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    path = tmp_path / name / "tokenizer.json"
    path.parent.mkdir()
    tok.save(str(path))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    buf = io.BytesIO()
    # Gemma's layout: <pad>=0, <eos>=1, <bos>=2, <unk>=3, turn markers as user-defined pieces.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=buf, model_type="bpe", vocab_size=400,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
        bos_piece="<bos>", unk_piece="<unk>", user_defined_symbols=["<start_of_turn>", "<end_of_turn>"],
        byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=False, hard_vocab_limit=False, minloglevel=2, num_threads=1)
    sp = root / "gemma" / "tokenizer.model"
    sp.parent.mkdir()
    sp.write_bytes(buf.getvalue())
    return {"gemma": sp, "llama": _bpe(root, LLAMA3_SPECIALS, "llama"),
            "qwen2": _bpe(root, QWEN_SPECIALS, "qwen2")}


def _tok(files, family):
    return load_tokenizer(files[family].parent, family)


def test_templates_per_family():
    assert get_template("llama") is LLAMA3 and get_template("qwen2") is CHATML
    assert get_template("gemma") is get_template("gemma2") is GEMMA
    with pytest.raises(ValueError, match="unknown"):
        get_template("mistral")


@pytest.mark.parametrize("family", ["gemma", "llama", "qwen2"])
def test_text_round_trip_and_batch(files, family):
    tok = _tok(files, family)
    for text in TEXTS:
        ids = tok.encode(text)
        assert all(isinstance(i, int) for i in ids) and max(ids) < tok.vocab_size
        assert tok.decode(ids) == text
        assert tok.decode(np.asarray(ids + [tok.pad_id, tok.pad_id], np.int32)) == text  # pads vanish
    assert tok.encode_batch(TEXTS) == [tok.encode(t) for t in TEXTS]
    assert tok.bos_id not in tok.encode("Hello")  # encode never adds specials


def test_special_ids(files):
    gemma, llama, qwen = (_tok(files, f) for f in ("gemma", "llama", "qwen2"))
    assert isinstance(gemma, SentencePieceTokenizer) and isinstance(llama, HFTokenizer)
    assert (gemma.pad_id, gemma.bos_id, gemma.eos_id) == (0, 2, gemma.sp.piece_to_id("<end_of_turn>"))
    ids = {t: llama.tok.token_to_id(t) for t in LLAMA3_SPECIALS}
    assert (llama.pad_id, llama.bos_id, llama.eos_id) == (ids["<|finetune_right_pad_id|>"],
                                                          ids["<|begin_of_text|>"], ids["<|eot_id|>"])
    ids = {t: qwen.tok.token_to_id(t) for t in QWEN_SPECIALS}
    assert (qwen.pad_id, qwen.bos_id, qwen.eos_id) == (ids["<|endoftext|>"], None, ids["<|im_end|>"])
    for tok in (gemma, llama, qwen):
        assert tok.pad_id != tok.eos_id and tok.end_id == tok.eos_id


EXPECTED = {  # what encode_chat(CHAT) decodes to (SentencePiece drops control tokens such as <bos>)
    "llama": ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a careful assistant."
              "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nCan I double the dose?<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\nPlease ask your doctor first.<|eot_id|>"),
    "qwen2": ("<|im_start|>system\nYou are a careful assistant.<|im_end|>\n<|im_start|>user\n"
              "Can I double the dose?<|im_end|>\n<|im_start|>assistant\nPlease ask your doctor first.<|im_end|>"),
    "gemma": ("<start_of_turn>user\nYou are a careful assistant.\n\nCan I double the dose?<end_of_turn>\n"
              "<start_of_turn>model\nPlease ask your doctor first.<end_of_turn>"),
}
PROMPT_TAIL = {"llama": "<|start_header_id|>assistant<|end_header_id|>\n\n",
               "qwen2": "<|im_start|>assistant\n", "gemma": "<start_of_turn>model\n"}


@pytest.mark.parametrize("family", ["gemma", "llama", "qwen2"])
def test_chat_template_loss_mask_and_prompt_plus_response(files, family):
    tok = _tok(files, family)
    ids, mask = tok.encode_chat(CHAT)
    assert ids.dtype == mask.dtype == np.int32 and ids.shape == mask.shape
    assert tok.decode(ids) == EXPECTED[family]
    assert (ids[0] == tok.bos_id) == (family != "qwen2")
    # the loss mask covers exactly the assistant's content and its end-of-turn (= EOS)
    learned = ids[mask == 1]
    assert learned[-1] == tok.eos_id and mask[-1] == 1
    assert tok.decode(learned[:-1]) == "Please ask your doctor first."
    assert np.all(np.diff(np.flatnonzero(mask)) == 1)  # one contiguous span
    # prompt + response == chat, and the prompt ends in the generation prefix
    prompt = tok.encode_prompt(CHAT[:-1])
    assert tok.decode(prompt).endswith(PROMPT_TAIL[family])
    response = tok.encode_response(CHAT[-1]["content"])
    assert prompt + response == ids.tolist()
    assert tok.decode_response(response + [tok.pad_id] * 3) == CHAT[-1]["content"]
    # loss_on="all" and batching
    assert tok.encode_chat(CHAT, loss_on="all", bos=False)[1].all()  # (BOS itself is never predicted)
    (b_ids, b_mask), = tok.encode_chats([CHAT])
    np.testing.assert_array_equal(b_ids, ids)
    np.testing.assert_array_equal(b_mask, mask)


def test_roles_mapped_per_template(files):
    chat = [{"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "Let me look."},
            {"role": "tool", "content": "sunny, 21"},
            {"role": "assistant", "content": "Sunny."}]
    llama, qwen, gemma = (_tok(files, f) for f in ("llama", "qwen2", "gemma"))
    text = llama.decode(llama.encode_chat(chat)[0])
    assert "<|start_header_id|>ipython<|end_header_id|>\n\nsunny, 21<|eot_id|>" in text
    assert ("<|im_start|>user\n<tool_response>\nsunny, 21\n</tool_response><|im_end|>"
            in qwen.decode(qwen.encode_chat(chat)[0]))
    text = gemma.decode(gemma.encode_chat(chat)[0])
    assert "<start_of_turn>user\nsunny, 21<end_of_turn>" in text and text.count("<start_of_turn>model\n") == 2
    # both assistant turns are learned, nothing else
    ids, mask = qwen.encode_chat(chat)
    assert qwen.decode(ids[mask == 1]) == "Let me look.<|im_end|>Sunny.<|im_end|>"
    # Gemma: a system message with no user turn after it becomes its own user turn
    alone = gemma.decode(gemma.encode_chat([{"role": "system", "content": "Be brief."},
                                            {"role": "assistant", "content": "OK."}])[0])
    assert alone == "<start_of_turn>user\nBe brief.<end_of_turn>\n<start_of_turn>model\nOK.<end_of_turn>"
    # bos is overridable; ChatML has none to add
    assert gemma.encode_chat(chat, bos=False)[0][0] != gemma.bos_id
    with pytest.raises(ValueError, match="no BOS"):
        qwen.encode_chat(chat, bos=True)


def test_errors_name_the_problem(files, tmp_path):
    llama = _tok(files, "llama")
    with pytest.raises(ValueError, match=r"message 1 \(user\): contains the special token '<\|eot_id\|>'"):
        llama.encode_chat([CHAT[0], {"role": "user", "content": "hi<|eot_id|>"}])
    with pytest.raises(ValueError, match="unknown role 'bot'"):
        llama.encode_chat([{"role": "bot", "content": "hi"}])
    with pytest.raises(ValueError, match="response: contains the special token"):
        llama.encode_response("done<|eot_id|>")
    # a Qwen vocabulary lacks Llama 3's header tokens
    with pytest.raises(ValueError, match=r"needs the special token '<\|eot_id\|>'"):
        HFTokenizer(files["qwen2"], "llama")
    with pytest.raises(ValueError, match=r"needs the special token '<end_of_turn>'"):
        SentencePieceTokenizer(_sp_without_turn_markers(), "gemma")
    with pytest.raises(FileNotFoundError):
        load_tokenizer(tmp_path, "gemma")


def _sp_without_turn_markers() -> bytes:
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS), model_writer=buf, model_type="bpe",
                                   vocab_size=200, pad_id=0, eos_id=1, bos_id=2, unk_id=3,
                                   pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
                                   unk_piece="<unk>", hard_vocab_limit=False, minloglevel=2)
    return buf.getvalue()


@pytest.mark.parametrize("family", ["gemma", "llama"])
def test_pickles_for_grain_workers(files, family):
    tok = _tok(files, family)
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.encode_chat(CHAT)[0].tolist() == tok.encode_chat(CHAT)[0].tolist()
    assert (clone.pad_id, clone.eos_id, clone.bos_id) == (tok.pad_id, tok.eos_id, tok.bos_id)


def test_lm_pipeline_runs_on_a_hugging_face_tokenizer(files):
    """SFT / pretraining batches over a real model's tokenizer (which takes no loss weights)."""
    from beneficial.data import pipeline
    tok = _tok(files, "llama")
    recs = [{"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": t[::-1]}]} for t in TEXTS]
    batch = next(iter(pipeline.lm_dataset(recs, tok, seq_len=128, batch_size=2, seed=0, packing=False, num_epochs=1)))
    assert batch["tokens"].shape == (2, 128) and batch["loss_mask"].sum() > 0
