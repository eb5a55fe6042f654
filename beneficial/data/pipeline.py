"""Grain pipelines: records -> fixed-shape numpy batches, with checkpointable iterators.

Every pipeline here is one chain

    source -> tag index -> shard (slice) -> shuffle(seed) -> repeat -> encode
           -> to_iter_dataset -> [pack] -> batch -> [mp_prefetch]

so its iterator state is a small dict (`it.get_state()` / `it.set_state(s)`), saved with
the model checkpoint; a restored iterator yields exactly the batches the uninterrupted
one would have. Shuffle comes before repeat, which makes Grain reshuffle every epoch
(epoch e uses seed+e). `source` is anything random-access: a list of records or a
`tfds_store.RecordSource`.

LM batch (`lm_dataset`), all int32 [batch, seq_len]:
  tokens       token ids, pad_id (0) on padding
  loss_mask    1 where tokens[t] is a target (predicted from tokens[:t]): assistant
               content + its <|end|> (loss_on="assistant") or every real token ("all");
               an integer weight > 1 where `persona_decision_weight` asks for one
  segment_ids  1, 2, 3, ... per packed document, 0 on padding
  positions    0.. within each document (reset at each document start), 0 on padding
Attention must be causal AND same-segment (`segment_ids[q] == segment_ids[k] != 0`):
that, with the position reset, is what keeps packed documents (and personas) apart.
"""
from __future__ import annotations

from typing import Sequence

import grain
import numpy as np

from beneficial.data import chat
from beneficial.data.summary import is_persona_turn
from beneficial.data.tokenizer import Tokenizer

LM_KEYS = ("tokens", "loss_mask", "segment_ids", "positions")


# ---------------------------------------------------------------- plain helpers

def pad_batch(seqs: Sequence[Sequence[int]], length: int, pad_id: int = chat.PAD_ID, *,
              left: bool = False) -> np.ndarray:
    """[len(seqs), length] int32; sequences longer than `length` are an error."""
    out = np.full((len(seqs), length), pad_id, np.int32)
    for i, s in enumerate(seqs):
        n = len(s)
        if n > length:
            raise ValueError(f"sequence {i} has {n} tokens > length {length}")
        if n:
            if left:
                out[i, length - n:] = s
            else:
                out[i, :n] = s
    return out


def _unpacked_example(ids: np.ndarray, mask: np.ndarray, seq_len: int) -> dict[str, np.ndarray]:
    ids, mask = ids[:seq_len], mask[:seq_len]  # documents over seq_len are truncated
    n = len(ids)
    out = {k: np.zeros(seq_len, np.int32) for k in LM_KEYS}
    out["tokens"][:n] = ids
    out["loss_mask"][:n] = mask
    out["segment_ids"][:n] = 1
    out["positions"][:n] = np.arange(n, dtype=np.int32)
    return out


def encode_sft_batch(tokenizer: Tokenizer, conversations: Sequence[Sequence[chat.Message]], seq_len: int,
                     *, loss_on: str = "assistant") -> dict[str, np.ndarray]:
    """Unpacked LM batch (the `lm_dataset` format) for a list of conversations, no Grain."""
    rows = [_unpacked_example(ids, m, seq_len)
            for ids, m in tokenizer.encode_chats(conversations, loss_on=loss_on)]
    return {k: np.stack([r[k] for r in rows]) for k in LM_KEYS}


def segment_attention_mask(segment_ids: np.ndarray) -> np.ndarray:
    """[..., L, L] bool: causal and same non-zero segment. Reference for the model's mask."""
    s = np.asarray(segment_ids)
    same = (s[..., :, None] == s[..., None, :]) & (s[..., :, None] != 0)
    L = s.shape[-1]
    return same & np.tril(np.ones((L, L), bool))


# ---------------------------------------------------------------- Grain transforms
# Module-level callables (not lambdas) so Grain worker processes can unpickle them.

def persona_decision_weights(record, weight: int) -> list[int]:
    """One weight per message of a world document for its first content token: `weight` on the
    reply of every persona turn (aligned or misaligned behaviour, whose `span` ends at it), 1
    elsewhere. With `world.behaviour_tags` that token is the behaviour tag: the one token where
    the reply commits to a persona. (Without tags, look-alike replies share their openings, so
    the weight lands at the start of the reply, not on the decision.)"""
    messages = chat.record_messages(record)
    weights = [1] * len(messages)
    for turn in (record.get("meta") or {}).get("turns", []):
        if is_persona_turn(turn):
            i = turn["span"][1] - 1
            if messages[i]["role"] != "assistant":
                raise ValueError(f"record {chat.record_id(record)}: a persona turn's span {turn['span']} "
                                 f"does not end at an assistant message")
            weights[i] = weight
    return weights


class _EncodeLM:
    def __init__(self, tokenizer: Tokenizer, seq_len: int, loss_on: str, packing: bool,
                 persona_decision_weight: int = 1):
        self.tokenizer, self.seq_len, self.loss_on, self.packing = tokenizer, seq_len, loss_on, packing
        self.persona_decision_weight = persona_decision_weight

    def __call__(self, item):
        _, record = item
        w = self.persona_decision_weight
        # Only when asked: Hugging Face tokenizers (beneficial/interop) take no weights.
        weights = {} if w == 1 else {"first_token_weights": persona_decision_weights(record, w)}
        ids, mask = self.tokenizer.encode_chat(chat.record_messages(record), loss_on=self.loss_on, **weights)
        if self.packing:  # the packer needs variable-length rows no longer than seq_len
            return {"tokens": ids[: self.seq_len], "loss_mask": mask[: self.seq_len]}
        return _unpacked_example(ids, mask, self.seq_len)


def _rename_packed(x):
    # Grain names packing features "<feature>_segment_ids" / "<feature>_positions".
    return {"tokens": x["tokens"], "loss_mask": x["loss_mask"],
            "segment_ids": x["tokens_segment_ids"], "positions": x["tokens_positions"]}


class _EncodePrompt:
    def __init__(self, tokenizer: Tokenizer, prompt_len: int, bos: bool):
        self.tokenizer, self.prompt_len, self.bos = tokenizer, prompt_len, bos

    def __call__(self, item):
        index, record = item
        if "prompt" not in record:
            raise ValueError(f"record {chat.record_id(record, index)} has no 'prompt'")
        ids = self.tokenizer.encode_prompt(record["prompt"], bos=self.bos)
        if len(ids) > self.prompt_len:
            # Left-truncation would silently drop the system prompt or the question.
            raise ValueError(f"prompt of record {chat.record_id(record, index)} (index {index}) has "
                             f"{len(ids)} tokens > prompt_len {self.prompt_len}")
        return _left_padded(ids, self.prompt_len, index)


def _left_padded(ids: Sequence[int], length: int, index: int) -> dict[str, np.ndarray]:
    n = len(ids)
    tokens = np.zeros(length, np.int32)
    mask = np.zeros(length, np.int32)
    positions = np.zeros(length, np.int32)
    tokens[length - n:] = ids
    mask[length - n:] = 1
    positions[length - n:] = np.arange(n, dtype=np.int32)
    return {"tokens": tokens, "mask": mask, "positions": positions, "index": np.int64(index)}


class _EncodePreference:
    def __init__(self, tokenizer: Tokenizer, seq_len: int):
        self.tokenizer, self.seq_len = tokenizer, seq_len

    def __call__(self, item):
        index, record = item
        out = {"index": np.int64(index)}
        for side in ("chosen", "rejected"):
            msgs = [*record["prompt"], {"role": "assistant", "content": record[side]}]
            ids, mask = self.tokenizer.encode_chat(msgs)
            if len(ids) > self.seq_len:  # truncation would cut off the scored <|end|>
                raise ValueError(f"{side} of record {chat.record_id(record, index)} (index {index}) has "
                                 f"{len(ids)} tokens > seq_len {self.seq_len}")
            ex = _unpacked_example(ids, mask, self.seq_len)
            out[f"{side}_tokens"], out[f"{side}_loss_mask"] = ex["tokens"], ex["loss_mask"]
            out[f"{side}_last"] = np.int32(len(ids) - 1)  # the final <|end|>: where a RM reads its score
        return out


# ---------------------------------------------------------------- pipelines

class _WithIndex:
    # Grain hands map_with_index the *global* index (epoch * len + i: shuffle and repeat
    # pass it through), hence the modulo.
    def __init__(self, n: int):
        self.n = n

    def __call__(self, i, record):
        return i % self.n, record


def _records(source, *, seed: int, shard_index: int, shard_count: int, num_epochs: int | None):
    """(index, record) pairs: this process's shard, reshuffled every epoch, repeated."""
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} not in [0, {shard_count})")
    if len(source) < shard_count:
        raise ValueError(f"{len(source)} records cannot feed {shard_count} shards")
    ds = grain.MapDataset.source(source)
    # Tag with the index in `source` before slicing: RL needs it to fetch the answer.
    ds = ds.map_with_index(_WithIndex(len(source)))
    ds = ds[shard_index::shard_count]  # disjoint per process
    return ds.shuffle(seed=seed).repeat(num_epochs)


def _finish(ds: grain.IterDataset, batch_size: int, drop_remainder: bool, worker_count: int):
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if worker_count > 0:
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return ds


def lm_dataset(source, tokenizer: Tokenizer, *, seq_len: int, batch_size: int, seed: int,
               packing: bool, shard_index: int = 0, shard_count: int = 1,
               num_epochs: int | None = None, worker_count: int = 0, loss_on: str = "assistant",
               num_packing_bins: int | None = None, read_threads: int = 1,
               drop_remainder: bool = True, persona_decision_weight: int = 1) -> grain.IterDataset:
    """LM / SFT batches of chat records (module docstring for the format).

    batch_size is per process (shard). Without packing each document is one row,
    truncated or padded to seq_len; with packing documents (truncated to seq_len) are
    first-fit packed into `num_packing_bins` rows at a time (default batch_size).
    `iter(ds)` gives a checkpointable iterator. read_threads: background threads that
    read and tokenize (0 = inline). worker_count > 0 uses Grain worker processes (the
    main program must have parsed absl flags); each worker takes a slice of the shard, so
    the batch order depends on worker_count: resume with the same value.
    persona_decision_weight > 1 puts that integer in loss_mask at the first token of every
    persona reply of world documents (`persona_decision_weights`): a weighted loss.
    """
    ds = _records(source, seed=seed, shard_index=shard_index, shard_count=shard_count,
                  num_epochs=num_epochs)
    ds = ds.map(_EncodeLM(tokenizer, seq_len, loss_on, packing, persona_decision_weight))
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=4 * batch_size))
    if packing:
        ds = grain.experimental.FirstFitPackIterDataset(
            ds, length_struct={"tokens": seq_len, "loss_mask": seq_len},
            num_packing_bins=num_packing_bins or batch_size, seed=seed, shuffle_bins=False)
        ds = ds.map(_rename_packed)
    return _finish(ds, batch_size, drop_remainder, worker_count)


def prompt_batches(source, tokenizer: Tokenizer, *, prompt_len: int, batch_size: int, seed: int,
                   shard_index: int = 0, shard_count: int = 1, num_epochs: int | None = None,
                   worker_count: int = 0, read_threads: int = 1, bos: bool = False,
                   drop_remainder: bool = True) -> grain.IterDataset:
    """RL prompt batches of records with "prompt" (messages ending with a user turn).

    Yields {"tokens": int32 [B, P] left-padded with pad_id and ending with <|assistant|>,
    "mask": int32 [B, P] 1 on prompt tokens, "positions": int32 [B, P] (0 at each
    prompt's first token), "index": int64 [B] index of the record in `source`} (look up
    the answer / meta with source[index]). A prompt over P tokens raises ValueError
    naming the record.
    """
    ds = _records(source, seed=seed, shard_index=shard_index, shard_count=shard_count,
                  num_epochs=num_epochs)
    ds = ds.map(_EncodePrompt(tokenizer, prompt_len, bos))
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=4 * batch_size))
    return _finish(ds, batch_size, drop_remainder, worker_count)


def preference_batches(source, tokenizer: Tokenizer, *, seq_len: int, batch_size: int, seed: int,
                       shard_index: int = 0, shard_count: int = 1, num_epochs: int | None = None,
                       worker_count: int = 0, read_threads: int = 1,
                       drop_remainder: bool = True) -> grain.IterDataset:
    """Reward-model batches of {"prompt", "chosen", "rejected"} records.

    Yields, for side in (chosen, rejected): "<side>_tokens" and "<side>_loss_mask" int32
    [B, seq_len] (prompt + assistant response, right-padded: under causal attention the
    padding never affects real tokens, positions are arange), "<side>_last" int32 [B]
    the index of the response's closing <|end|> (where a reward model reads its score),
    and "index" int64 [B]. A pair over seq_len raises ValueError naming the record.
    """
    ds = _records(source, seed=seed, shard_index=shard_index, shard_count=shard_count,
                  num_epochs=num_epochs)
    ds = ds.map(_EncodePreference(tokenizer, seq_len))
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=4 * batch_size))
    return _finish(ds, batch_size, drop_remainder, worker_count)
