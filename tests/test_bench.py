"""The ``deepeprop bench`` command on a tiny configuration: a table and JSON with the documented keys."""
from __future__ import annotations

import json

from deepeprop import bench
from deepeprop.cli import main


def test_bench_writes_table_and_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    code = main(["bench", "--T", "5", "--width", "3", "--depth", "2", "--batch", "2", "--repeats", "1",
                 "--engines", "bptt,eprop,deep_eprop_factored,deep_eprop@reverse", "--model", "exact", "--alignment",
                 "--json", str(path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "ms/step" in out and "GFLOP/s" in out and "eprop/bptt time" in out
    result = json.loads(path.read_text())
    assert result["keys"] == list(bench.ROW_KEYS)
    rows = {row["engine"]: row for row in result["rows"]}
    assert set(rows) == {"bptt", "eprop", "deep_eprop_factored", "deep_eprop@reverse"}
    for key in bench.ROW_KEYS:
        assert key in rows["bptt"]
    assert "deep_eprop@reverse" in out  # an evaluation named in --engines is timed and printed with its cost
    for method in ("bptt", "eprop", "deep_eprop@reverse"):
        row = rows[method]
        assert row["status"] == "ok" and row["per_step_ms"] > 0 and row["peak_bytes"] > 0
        assert row["peak_bytes"] == row["temp_bytes"] + row["argument_bytes"] + row["output_bytes"]
        assert row["trace_elements"] > 0 and row["flops_per_step"] > 0 and row["compile_s"] >= 0
        assert len(row["alignment"]) == 3
    assert rows["bptt"]["alignment"][-1] == 1.0  # (silent tiny layers have no cosine: None)
    assert all(c is None or -1.0 <= c <= 1.0 for c in rows["eprop"]["alignment"])
    # the default-option model (reset path kept) is not supported by the factored trace: reported, not fatal
    assert rows["deep_eprop_factored"]["status"].startswith("skipped")
    assert result["peak_gflops"] > 0


def test_bench_rejects_unknown_engine(capsys):
    import pytest

    with pytest.raises(SystemExit) as info:
        main(["bench", "--engines", "nope"])
    assert info.value.code == 2
    assert "unknown engine" in capsys.readouterr().err


def test_theoretical_cost_orders_the_engines():
    import jax.numpy as jnp

    model = bench.build_model(dict(model="factorisable", readout="leaky", width=16, depth=3), jnp.float32)
    cost = {m: bench.theoretical_cost(m, model, 4, 100) for m in bench.DEFAULT_ENGINES}
    assert cost["rtrl"][0] > cost["deep_eprop"][0] > cost["deep_eprop_factored"][0] > cost["eprop"][0]
    assert cost["rtrl"][1] > cost["deep_eprop"][1] > cost["eprop"][1]


def test_compile_engine_takes_the_loss():
    """``compile_engine(..., loss="cross_entropy")`` with (T, B) int labels (the braintrace comparison's loss)."""
    import jax
    import jax.numpy as jnp

    model = bench.build_model(dict(model="factorisable", readout="leaky", width=4, depth=2), jnp.float32)
    T, B = 6, 2
    inputs = jnp.ones((T, B, bench.N_IN), jnp.float32)
    labels = jnp.zeros((T, B), jnp.int32)
    fn, args, _, memory = bench.compile_engine("eprop[readout_filter=False]", model, (inputs, labels, jnp.ones((T, B))),
                                               loss="cross_entropy")
    loss, grads = jax.block_until_ready(fn(*args))
    assert float(loss) > 0 and memory is not None
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))


def test_bench_markdown_and_trace_budget(tmp_path):
    """--markdown writes every row; an engine over --max-trace-gb is skipped with the figure, not run."""
    path = tmp_path / "bench.md"
    code = main(["bench", "--T", "4", "--width", "3", "--depth", "1", "--batch", "2", "--repeats", "1",
                 "--engines", "bptt,rtrl", "--max-trace-gb", "1e-6", "--markdown", str(path)])
    assert code == 0
    text = path.read_text()
    assert "| T4_n3_L1 | `bptt` |" in text and "| T4_n3_L1 | `rtrl` |" in text
    assert "`rtrl` | 4 | 3 | 1 | 2 | skipped: its traces would need" in text  # B n^2 P * 4 bytes > 1 kB
    code = main(["bench", "--T", "4", "--width", "3", "--depth", "1", "--batch", "2", "--repeats", "1",
                 "--engines", "bptt", "--max-call-s", "1e-12", "--markdown", str(path)])
    assert code == 0 and "`bptt` | 4 | 3 | 1 | 2 | skipped: one call needs" in path.read_text()


def test_scaling_growth_is_last_over_first_along_each_axis():
    def row(case, engine, T, ms, memory, elements, flops):
        return dict(suite="scaling", case=case, engine=engine, status="ok", T=T, width=64, depth=2, batch=8,
                    per_step_ms=ms, engine_peak_bytes=memory, trace_elements=elements, flops_per_step=flops)

    rows = [row("T1000", "eprop", 1000, 2.0, 110, 50, 400), row("T100", "eprop", 100, 1.0, 100, 50, 400),
            row("n64", "eprop", 100, 1.0, 100, 50, 400)]
    growth = bench.scaling_growth(rows)
    assert set(growth) == {("T: 100 -> 1000", "eprop")}  # one n point: no growth along n
    assert growth[("T: 100 -> 1000", "eprop")] == dict(time=2.0, flops=1.0, memory=1.1, trace=1.0)
