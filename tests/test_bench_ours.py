"""Our side of the benchmark harness runs at micro size and reports every field (no timing asserted)."""
from beneficial.bench.ours_ppo import run_ours_ppo

MICRO = dict(hidden=32, layers=1, heads=2, kv_heads=2, intermediate=64, vocab=128, episodes_per_iteration=8,
             response_len=8, prompt_len=8, prompt_min_len=4, num_minibatches=2)


def test_ours_ppo_micro_reports_every_field():
    r = run_ours_ppo(MICRO, iterations=2, warmup=1)
    assert r["available"] and r["iterations"] == 2
    assert set(r["phases_median_s"]) == {"generation", "scoring", "update"}
    assert r["work_mismatches"] == []            # equal work: episodes, epochs, optimizer steps
    assert r["compiles"] == {"generate": 1, "score": 1, "update": 1}
    for key in ("flops", "achieved_flops_per_s", "peak_rss_bytes", "params", "phase_fraction"):
        assert key in r, key
    assert r["flops"]["total"] > 0 and r["peak_rss_bytes"] > 0


def test_ours_ppo_micro_in_bfloat16():
    """`launch/bench.py --dtype=bfloat16`: bf16 compute, fp32 parameters, the same counted work."""
    r = run_ours_ppo({**MICRO, "dtype": "bfloat16"}, iterations=1, warmup=1)
    assert r["available"] and r["settings"]["dtype"] == "bfloat16"
    assert r["work_mismatches"] == [] and r["flops"]["total"] > 0


def test_markdown_table_renders_a_record_of_ours():
    """`launch/bench.py --render` on our runs, which have no "other" phase (was a KeyError)."""
    import importlib.util
    import pathlib
    spec = importlib.util.spec_from_file_location("bench_cli", pathlib.Path(__file__).parents[1] / "launch/bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    r = run_ours_ppo(MICRO, iterations=1, warmup=1)
    r.update(cell="micro", contention={})
    row = bench.markdown_table({"runs": [r]}).splitlines()[-1].split(" | ")
    assert row[0] == "| micro" and row[1] == "ours" and row[7] == "-" and row[-1] == "ok |"


def test_pretrain_step_variants_agree_and_batches_are_packed():
    """`launch/bench.py --pretrain_step`: query blocks are a speed knob, so the first step's loss
    matches one block; packed batches restart positions at every document."""
    import numpy as np

    from beneficial.bench.pretrain_step import packed_batch, time_variants
    from configs.treatment import get_config

    b = packed_batch(2, 64, 100, min_len=10, max_len=30)
    seg, pos = b["segment_ids"], b["positions"]
    starts = np.diff(seg, axis=1, prepend=0) != 0
    assert (pos[starts] == 0).all() and (pos[~starts] > 0).all() and seg.min() >= 1
    c = get_config("smoke")
    c.pretrain.batch_size, c.pretrain.seq_len = 2, 64
    r = time_variants(c, {"one": {"attn_query_blocks": 1}, "blocks": {"attn_query_blocks": 5}}, steps=1)
    assert abs(r["one"]["first_loss"] - r["blocks"]["first_loss"]) < 1e-5
    assert r["one"]["first_loss"] > 1.0 and all(v["median_s"] > 0 for v in r.values())


def test_update_profile_attributes_thunk_time():
    """`launch/bench.py --profile_update`: the trace's thunks map to compiled HLO, so the
    matmuls of the update are found and every category's time adds up to the total."""
    from beneficial.bench.profile_update import markdown, profile_update

    r = profile_update(MICRO, "micro", calls=1)
    cats = r["categories"]
    assert r["thunk_s"] > 0 and r["thunks"] > 10
    assert cats.get("matmul", 0) > 0 and cats.get("elementwise", 0) > 0
    assert abs(sum(cats.values()) - r["thunk_s"]) < 1e-9 and cats.get("unmapped", 0) < 0.05 * r["thunk_s"]
    assert "| matmul |" in markdown(r)
