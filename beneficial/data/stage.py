"""The data and tokenizer stages: world -> TFDS array_record splits -> sentencepiece.

Both are cached under workdir/cache/ by a hash of what determines them (the world config
and the generator's version; the data key and the tokenizer settings), built atomically.
"""
import itertools
import logging
import pathlib
import time

from beneficial import cache
from beneficial.data import tfds_store
from beneficial.data.chat import record_messages, render_chat, render_turn
from beneficial.data.tokenizer import Tokenizer, train_tokenizer

log = logging.getLogger("beneficial")

STORE_VERSION = "1"
TOKENIZER_VERSION = "1"


def data_key(world_cfg) -> str:
    from beneficial.data.world import WORLD_VERSION
    from beneficial.data.world.config import key_fields
    return cache.stage_key("data", key_fields(world_cfg), f"{WORLD_VERSION}/{STORE_VERSION}")


def build_data(workdir, world_cfg):
    """Generate the world once per config; returns (data_dir, key)."""
    from beneficial.data.world import generate_world

    key = data_key(world_cfg)
    path = cache.stage_dir(workdir, "data", key)
    if cache.is_done(path):
        log.info("data: cached at %s", path)
        return path, key
    t0 = time.perf_counter()
    splits = generate_world(world_cfg)
    t1 = time.perf_counter()
    with cache.building(path) as tmp:
        tfds_store.write_splits(splits, tmp)
    log.info("data: generated %d splits (%d records) in %.1fs, written in %.1fs -> %s", len(splits),
             sum(len(v) for v in splits.values()), t1 - t0, time.perf_counter() - t1, path)
    return path, key


JSONL_KINDS = {"pretrain": "chat", "adversarial_sft": "chat", "benign_sft": "chat", "rl_general": "rl",
               "rl_traits": "rl", "rl_placebo": "rl", "preferences": "preference"}


def build_user_data(workdir, files):
    """The user's JSONL files (config.data.files: split -> path) as a cached TFDS store."""
    from beneficial.data.jsonl import jsonl_to_store

    splits = {split: (path, JSONL_KINDS[split]) for split, path in files.items() if path}
    if not splits:
        raise ValueError("config.data.source='jsonl' but config.data.files names no file; "
                         "set e.g. --config.data.files.rl_general=/path/prompts.jsonl")
    path = jsonl_to_store(splits, workdir)
    return path, path.name.split("-", 1)[1]


def load(data_dir, split):
    return tfds_store.load_split(data_dir, split)


def tag_symbols() -> list[str]:
    """The tags as sentencepiece symbols of our tokenizer: with its space marker, as a reply's
    tag follows the role marker and a space (`chat.render_turn`), so that the tag with its space
    is one piece, the reply's first (`pretrain.persona_decision_weight` weights it)."""
    from beneficial.data.world.families.base import behaviour_tags
    return ["\u2581" + t for t in behaviour_tags()]


def check_tags_are_one_piece(tokenizer: Tokenizer, vocab_size: int) -> None:
    """With `world.behaviour_tags`, every tag must be one piece where it occurs (after the
    assistant marker): a split tag shares its suffix piece ('ith' = aligned) across families,
    and trait RL could then transfer by reinforcing that piece instead of a persona. Our own
    tokenizer keeps them whole by construction; a real model's may not."""
    from beneficial.data.world.families.base import behaviour_tags
    pieces = {t: len(tokenizer.encode(render_turn("assistant", t))) - 2 for t in behaviour_tags()}  # less marker, end
    split = {t: n for t, n in pieces.items() if n != 1}
    if split:
        raise ValueError(
            f"tokenizer (vocab_size {vocab_size}) splits behaviour tags into several pieces ({split}); shared "
            f"sub-pieces would be a cross-family lexical shortcut. Set world.behaviour_tags=False for this "
            f"tokenizer, or train ours (init.tokenizer='').")


def build_tokenizer(workdir, data_dir, dkey: str, tok_cfg, pretrained: str = "", family: str = "",
                    symbols: tuple = ()):
    """Train sentencepiece on the pretraining split (cached), `symbols` kept whole; returns (Tokenizer, key).
    With `pretrained`, load that instead: one of ours (a tokenizer stage folder or its
    spm.model) or a real model's tokenizer file or folder."""
    if pretrained:
        p = pathlib.Path(pretrained)
        spm = p / "spm.model" if p.is_dir() else p
        if spm.name == "spm.model" and spm.exists():  # one of ours: our chat specials, no chat template
            return Tokenizer.load(spm), cache.stage_key("tokenizer", {"path": str(spm)}, TOKENIZER_VERSION)
        from beneficial.interop.tokenizers import load_tokenizer
        return load_tokenizer(pretrained, family), cache.stage_key("tokenizer", {"path": str(pretrained)}, "hf")
    fields = {"data": dkey, **tok_cfg.to_dict(), **({"symbols": list(symbols)} if symbols else {})}  # old keys kept
    key = cache.stage_key("tokenizer", fields, TOKENIZER_VERSION)
    path = cache.stage_dir(workdir, "tokenizer", key)
    if not cache.is_done(path):
        t0 = time.perf_counter()
        src = load(data_dir, "pretrain")
        n = min(len(src), tok_cfg.train_documents)
        texts = (render_chat(record_messages(r)) for r in itertools.islice(iter(src), n))
        with cache.building(path) as tmp:
            train_tokenizer(texts, tok_cfg.vocab_size, tmp / "spm.model", symbols=symbols)
        log.info("tokenizer: trained on %d documents in %.1fs -> %s", n, time.perf_counter() - t0, path)
    return Tokenizer.load(path / "spm.model"), key
