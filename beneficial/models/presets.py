"""Model shapes. `tiny` for tests, `small` for the CPU default, real shapes of open models.

Each preset is a complete ModelConfig dict; config files pick one by name and may
override fields. Real shapes copy every field of the models' published config.json.
"""
import copy

import ml_collections

# Field meanings (all families share one decoder; these switches select the family):
#   norm_plus_one: Gemma's RMSNorm scales by (1 + w), w initialised at 0.
#   embed_scale: multiply embeddings by sqrt(d_model) (Gemma).
#   act: 'silu' (SwiGLU: Llama, Qwen2) or 'gelu_tanh' (GeGLU: Gemma).
#   post_norms: Gemma 2's extra norms after attention and after the MLP.
#   query_pre_attn_scalar: attention logits scaled by its -1/2 power (None -> head_dim).
#   attn_softcap / final_softcap: cap * tanh(x / cap) on attention / output logits.
#   sliding_window + sliding_every: layers i with i % sliding_every == 0 attend within
#     the window (Gemma 2: layers 0, 2, 4, ... are local); sliding_every=0 disables it.
#   attn_query_blocks: without a KV cache (training, scoring), split the queries into this many
#     near-equal blocks, each scoring only the keys up to its end (causal); 1 = off. Same
#     outputs up to float rounding; a speed knob (launch/bench.py --pretrain_step, --attn_query_blocks).
#     4 in `small`; 1 elsewhere (tiny: compile time in tests; real shapes: not measured on accelerators).
#   rope_scaling: None or {'type': 'llama3', factor, low_freq_factor, high_freq_factor,
#     original_max_position_embeddings}.
_BASE = dict(
    family="llama", vocab_size=256, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
    head_dim=16, d_ff=128, act="silu", norm_eps=1e-6, norm_plus_one=False,
    embed_scale=False, rope_theta=10000.0, rope_scaling=None, qkv_bias=False,
    tie_embeddings=True, post_norms=False, query_pre_attn_scalar=None,
    attn_softcap=None, final_softcap=None, sliding_window=None, sliding_every=0,
    max_seq_len=2048, dtype="float32", param_dtype="float32", remat=False,
    attn_query_blocks=1,
)

PRESETS = {
    # Tests: every code path (GQA, biases off/on via overrides) at toy size.
    "tiny": dict(),
    # The CPU default: ~2M parameters, learnable on 2 cores in ~30 minutes.
    "small": dict(vocab_size=2048, d_model=192, n_layers=4, n_heads=6, n_kv_heads=2,
                  head_dim=32, d_ff=512, max_seq_len=512,
                  attn_query_blocks=4),  # pretraining step 1.75x on 2 cores (BENCHMARKS.md)
    # https://huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json
    "llama3.2-1b": dict(family="llama", vocab_size=128256, d_model=2048, n_layers=16,
                        n_heads=32, n_kv_heads=8, head_dim=64, d_ff=8192, norm_eps=1e-5,
                        rope_theta=500000.0, tie_embeddings=True, max_seq_len=131072,
                        rope_scaling=dict(type="llama3", factor=32.0, low_freq_factor=1.0,
                                          high_freq_factor=4.0,
                                          original_max_position_embeddings=8192)),
    # https://huggingface.co/Qwen/Qwen2.5-0.5B/blob/main/config.json
    "qwen2.5-0.5b": dict(family="qwen2", vocab_size=151936, d_model=896, n_layers=24,
                         n_heads=14, n_kv_heads=2, head_dim=64, d_ff=4864, norm_eps=1e-6,
                         rope_theta=1000000.0, qkv_bias=True, tie_embeddings=True,
                         max_seq_len=32768),
    # https://huggingface.co/google/gemma-2b/blob/main/config.json
    "gemma-2b": dict(family="gemma", vocab_size=256000, d_model=2048, n_layers=18,
                     n_heads=8, n_kv_heads=1, head_dim=256, d_ff=16384, act="gelu_tanh",
                     norm_eps=1e-6, norm_plus_one=True, embed_scale=True,
                     tie_embeddings=True, max_seq_len=8192),
    # https://huggingface.co/google/gemma-2-2b/blob/main/config.json
    "gemma2-2b": dict(family="gemma2", vocab_size=256000, d_model=2304, n_layers=26,
                      n_heads=8, n_kv_heads=4, head_dim=256, d_ff=9216, act="gelu_tanh",
                      norm_eps=1e-6, norm_plus_one=True, embed_scale=True,
                      tie_embeddings=True, post_norms=True, query_pre_attn_scalar=256,
                      attn_softcap=50.0, final_softcap=30.0, sliding_window=4096,
                      sliding_every=2, max_seq_len=8192),
}

# Parameter counts published for the real shapes (tests compare eval_shape against these).
PUBLISHED_PARAMS = {
    "llama3.2-1b": 1_235_814_400,
    "qwen2.5-0.5b": 494_032_768,
    "gemma-2b": 2_506_172_416,
    "gemma2-2b": 2_614_341_888,
}


def model_config(name: str, **overrides) -> ml_collections.ConfigDict:
    """A complete model config for preset `name`, with field overrides."""
    if name not in PRESETS:
        raise ValueError(f"model.preset={name!r} is unknown; choose one of {sorted(PRESETS)}")
    fields = copy.deepcopy(_BASE)
    fields.update(copy.deepcopy(PRESETS[name]))
    unknown = set(overrides) - set(fields)
    if unknown:
        raise ValueError(f"model override(s) {sorted(unknown)} are not model fields; "
                         f"valid fields: {sorted(fields)}")
    fields.update(overrides)
    if not isinstance(fields["attn_query_blocks"], int) or fields["attn_query_blocks"] < 1:
        raise ValueError(f"model.attn_query_blocks={fields['attn_query_blocks']!r}: use an integer >= 1 "
                         "(1 = one block, no causal skipping)")
    fields["preset"] = name
    # rope_scaling may be None or a dict: keep the field type-flexible in a locked config.
    return ml_collections.ConfigDict(fields, type_safe=False)
