"""SentencePiece tokenizer with the chat format's special tokens (chat.py).

Choices, and why:
  * `<pad>`=0, `<unk>`=1, `<bos>`=2, then `<|system|> <|user|> <|assistant|> <|tool|>
    <|end|> \\n` as user-defined symbols (ids 3..8): always atomic, never merged, so a
    conversation's ids are independent of its neighbours' text.
  * identity normalisation, no extra-whitespace removal, no dummy prefix, byte fallback:
    decode(encode(text)) == text for any text, and the ids of a rendered chat equal
    the concatenation of its per-turn pieces (tested), so prompt + response == chat.
  * split_digits: small models learn arithmetic on single digits much faster.
"""
from __future__ import annotations

import io
import os
import pathlib
from typing import Iterable, Sequence

import numpy as np
import sentencepiece as spm

from beneficial.data import chat

# Sentences (lines) the trainer sees at most; a deterministic subsample beyond that.
# ~250k short lines train a 2k-piece BPE in seconds and give the same pieces as more.
MAX_SENTENCES = 250_000
_ASCII = "".join(chr(c) for c in range(33, 127))


def _training_lines(texts: Iterable[str], max_sentences: int, seed: int) -> list[str]:
    # One line per turn: SentencePiece silently drops sentences over
    # max_sentence_length, and per-line sampling is finer-grained than per-document.
    lines = [ln for t in texts for ln in t.split(chat.SEP) if ln.strip()]
    if len(lines) > max_sentences:
        keep = np.sort(np.random.default_rng(seed).choice(len(lines), max_sentences, replace=False))
        lines = [lines[i] for i in keep]
    return lines


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_path, *, symbols: Iterable[str] = (), model_type: str = "bpe",
                    character_coverage: float = 1.0, max_sentences: int = MAX_SENTENCES,
                    seed: int = 0, num_threads: int = 1) -> pathlib.Path:
    """Trains a SentencePiece model on `texts` (rendered chats or plain text) -> out_path.

    Deterministic: the same texts and arguments give a byte-identical model file (we
    subsample ourselves with a seeded RNG and disable SentencePiece's own shuffling).
    `symbols`: extra words always kept one piece (the world's behaviour tags), after the specials.
    """
    symbols = list(symbols)
    min_size = 3 + len(chat.USER_DEFINED) + len(symbols) + 256 + len(_ASCII)  # specials, symbols, bytes, ASCII
    if vocab_size <= min_size:
        raise ValueError(f"vocab_size {vocab_size} leaves no merges: need > {min_size}")
    lines = _training_lines(texts, max_sentences, seed)
    if not lines:
        raise ValueError("train_tokenizer: no training text")
    spm.set_random_generator_seed(seed)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf,
        model_type=model_type, vocab_size=vocab_size,
        pad_id=chat.PAD_ID, unk_id=chat.UNK_ID, bos_id=chat.BOS_ID, eos_id=-1,
        pad_piece=chat.PAD, unk_piece=chat.UNK, bos_piece=chat.BOS,
        user_defined_symbols=list(chat.USER_DEFINED) + symbols,
        byte_fallback=True, split_digits=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=False,
        character_coverage=character_coverage,
        required_chars=_ASCII,  # every digit/letter/punctuation a piece, even if rare in the corpus
        input_sentence_size=0, shuffle_input_sentence=False,  # we sampled already
        max_sentence_length=1 << 16, hard_vocab_limit=False,  # tiny corpora (tests) still train
        num_threads=num_threads, minloglevel=2,
    )
    out_path = pathlib.Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, out_path)
    return out_path


class Tokenizer:
    """Encodes text and chats; all ids are Python ints / np.int32 arrays."""

    def __init__(self, model_proto: bytes):
        self._proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor(model_proto=self._proto)
        ids = {p: self.sp.piece_to_id(p) for p in (chat.PAD, chat.UNK, chat.BOS, *chat.USER_DEFINED)}
        expected = dict(zip((chat.PAD, chat.UNK, chat.BOS, *chat.USER_DEFINED), range(9)))
        if ids != expected:
            raise ValueError(f"not a beneficial chat tokenizer: special ids {ids}, expected {expected}")
        self.pad_id, self.unk_id, self.bos_id = chat.PAD_ID, chat.UNK_ID, chat.BOS_ID
        self.role_ids = {r: ids[t] for r, t in chat.ROLE_TOKENS.items()}
        self.eos_id = self.end_id = ids[chat.END]
        self.sep_id = ids[chat.SEP]

    @classmethod
    def load(cls, path) -> "Tokenizer":
        return cls(pathlib.Path(path).read_bytes())

    # Picklable for Grain worker processes (SentencePieceProcessor itself is not).
    def __getstate__(self):
        return {"model_proto": self._proto}

    def __setstate__(self, state):
        self.__init__(state["model_proto"])

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def id_to_piece(self, i: int) -> str:
        return self.sp.id_to_piece(int(i))

    # --- text -----------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self.sp.encode(list(texts))  # one C++ call for the whole batch

    def decode(self, ids) -> str:
        return self.sp.decode([int(i) for i in np.asarray(ids).reshape(-1) if i != self.pad_id])

    def decode_response(self, ids) -> str:
        """Generated ids -> response text: up to the first `<|end|>`, without the leading space."""
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        text = self.decode(ids)
        return text[1:] if text.startswith(" ") else text

    # --- chat -----------------------------------------------------------------
    def encode_chats(self, conversations: Sequence[Sequence[chat.Message]], *, bos: bool = False,
                     loss_on: str = "assistant", first_token_weights: Sequence[Sequence[int]] | None = None
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Batched `encode_chat`: all message contents go through SentencePiece at once."""
        if loss_on not in ("assistant", "all"):
            raise ValueError(f"loss_on must be 'assistant' or 'all', got {loss_on!r}")
        for msgs in conversations:
            chat.check_messages(msgs)
        pieces = self.encode_batch([" " + m["content"] for msgs in conversations for m in msgs])
        out, k = [], 0
        for c, msgs in enumerate(conversations):
            ids, mask = ([self.bos_id], [0]) if bos else ([], [])
            for i, m in enumerate(msgs):
                body = pieces[k]
                k += 1
                learn = 1 if (loss_on == "all" or m["role"] == "assistant") else 0
                first = learn * (1 if first_token_weights is None else int(first_token_weights[c][i]))
                head = ([self.sep_id] if i else []) + [self.role_ids[m["role"]]]
                ids += head + body + [self.end_id]
                # The role token and separator are given, not predicted (in 'assistant' mode).
                mask += [1 if loss_on == "all" else 0] * len(head) + [first] + [learn] * len(body)
            out.append((np.asarray(ids, np.int32), np.asarray(mask, np.int32)))
        return out

    def encode_chat(self, messages: Sequence[chat.Message], *, bos: bool = False,
                    loss_on: str = "assistant", first_token_weights: Sequence[int] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids, loss_mask) int32; mask = 1 on assistant content tokens and their `<|end|>`.

        loss_on="all" puts the mask on every token (plain LM loss). The mask is aligned
        with ids: mask[t] = 1 means "predict ids[t] from ids[:t]". first_token_weights (one
        integer per message) multiply the mask at each message's first content token (or
        its <|end|> if it has none): a loss weight on where a reply starts.
        """
        return self.encode_chats([messages], bos=bos, loss_on=loss_on,
                                 first_token_weights=None if first_token_weights is None else [first_token_weights])[0]

    def encode_prompt(self, messages: Sequence[chat.Message], *, bos: bool = False) -> list[int]:
        """Rendered messages + "\\n<|assistant|>": what the sampler continues."""
        ids = [self.bos_id] if bos else []
        if messages:
            ids += self.encode_chat(messages)[0].tolist() + [self.sep_id]
        return ids + [self.role_ids["assistant"]]

    def encode_response(self, text: str) -> list[int]:
        """` text<|end|>`: the ids a policy generates after `encode_prompt`."""
        if any(t in text for t in chat.RESERVED):
            raise ValueError(f"response contains a reserved token: {text!r:.80}")
        return self.encode(" " + text) + [self.end_id]
