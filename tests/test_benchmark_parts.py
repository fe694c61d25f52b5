"""The benchmark report's parts that need no peer and time nothing: the machine header, the
output check of the peers, the summaries after the cells' table and the issue 12 targets.

Speed itself is measured in ``bench/`` and never asserted here.
"""

import sys
import types

import numpy as np
import pytest

import fastrnn
from fastrnn.benchmarks import machine
from fastrnn.benchmarks.grid import CELLS, SHAPES, first_step, make_step_problem
from fastrnn.benchmarks.machine import (CpuInfo, cpu_info, forward_flops, header_lines, isa_level,
                                        parse_cpuinfo, parse_lscpu, sgemm_peak,
                                        sgemm_runner)
from fastrnn.benchmarks.passes import Row, best_peer_summary, efficiency_table, is_large_row
from fastrnn.benchmarks.peers import PEER_TOLERANCES, agreement
from fastrnn.benchmarks.targets import (BEST_PEER_MEDIAN_TARGET, PEER_TARGETS, SGEMM_PEAK_TARGET,
                                        STREAMING_TARGET)

#: Two processors of a Zen 4 as Linux prints them (flags shortened), then an unrelated block.
FAKE_CPUINFO = """\
processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse2 avx fma avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 avx512_vnni sha_ni

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: something else entirely
flags\t\t: fpu sse2

power management:
"""

FAKE_LSCPU = """\
Architecture:                         x86_64
Model name:                           Intel(R) Xeon(R) Platinum 8480+
Flags:                                fpu avx2 fma avx512f avx512bw avx512vl avx512dq avx512_bf16 amx_tile amx_bf16 amx_int8
"""


def test_parse_cpuinfo_reads_the_first_processor():
    info = parse_cpuinfo(FAKE_CPUINFO)
    assert info.model == "AMD EPYC 9R14 96-Core Processor"
    assert info.describe() == "AMD EPYC 9R14 96-Core Processor (AuthenticAMD family 25 model 17)"
    present, absent = info.relevant_flags()
    assert present == ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16",
                       "avx512_vnni"]
    assert absent == ["amx_tile", "amx_bf16", "amx_int8"]
    assert info.describe_flags() == ("avx2 fma avx512f avx512bw avx512vl avx512dq avx512_bf16 "
                                     "avx512_vnni (no amx_tile amx_bf16 amx_int8)")


def test_parse_cpuinfo_without_a_model_or_flags_gives_none():
    arm = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\n"
    assert parse_cpuinfo(arm) is None
    assert parse_cpuinfo("") is None


def test_parse_lscpu():
    info = parse_lscpu(FAKE_LSCPU)
    assert info.model == "Intel(R) Xeon(R) Platinum 8480+"
    assert {"amx_tile", "amx_bf16", "amx_int8", "avx512_bf16"} <= info.flags
    assert "avx512_vnni" in info.relevant_flags()[1]
    assert info.describe() == "Intel(R) Xeon(R) Platinum 8480+"  # lscpu's family is not parsed
    assert parse_lscpu("Architecture: aarch64\n") is None


def test_cpu_info_reads_the_file_it_is_given(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(FAKE_CPUINFO)
    assert cpu_info(str(path)).model == "AMD EPYC 9R14 96-Core Processor"
    # a missing file falls back to lscpu or platform: always some model name
    fallback = cpu_info(str(tmp_path / "missing"))
    assert isinstance(fallback, CpuInfo) and fallback.model


def test_cpu_without_any_relevant_flag_says_so():
    assert CpuInfo("old", ["sse2"]).describe_flags().startswith("none of avx2 fma")


def test_header_lines_name_cpu_flags_level_threads_and_peak():
    lines = header_lines([1, 2], peak=95.04, cpu=parse_cpuinfo(FAKE_CPUINFO), level="avx512 (forced)")
    assert lines[0].startswith("cpu: AMD EPYC 9R14 96-Core Processor (AuthenticAMD family 25 model 17), ")
    assert lines[1].startswith("isa flags: avx2 fma avx512f")
    assert lines[2] == "fastrnn isa level: avx512 (forced)"
    assert lines[3] == "threads: 1, 2"
    assert lines[4].endswith(": 95.0 GFLOP/s")
    assert len(header_lines([1], cpu=CpuInfo("x", ()), level="generic")) == 4  # no peak, no line


@pytest.mark.parametrize("answer, expected", [
    (("avx512", "the CPU has avx512f/bw/vl/dq"), "avx512 (the CPU has avx512f/bw/vl/dq)"),
    (("avx2",), "avx2"),
    ("generic: FASTRNN_ISA=generic", "generic: FASTRNN_ISA=generic"),
])
def test_isa_level_formats_the_extensions_answer(monkeypatch, answer, expected):
    fake = types.ModuleType("fastrnn._cy")
    fake.isa_level = lambda: answer
    monkeypatch.setitem(sys.modules, "fastrnn._cy", fake)
    monkeypatch.setattr(fastrnn, "_cy", fake, raising=False)
    assert isa_level() == expected


def test_isa_level_without_the_query_says_so(monkeypatch):
    fake = types.ModuleType("fastrnn._cy")
    monkeypatch.setitem(sys.modules, "fastrnn._cy", fake)
    monkeypatch.setattr(fastrnn, "_cy", fake, raising=False)
    assert isa_level() == machine.NO_LEVEL_QUERY


def test_sgemm_peak_is_a_positive_rate():
    assert sgemm_peak(n=64, repeats=2) > 0


def test_forward_flops_counts_both_products():
    # LSTM S2: 2 * T * B * 4H * (D + H) = 2 * 100 * 64 * 2048 * 1024
    assert forward_flops(CELLS["lstm"], SHAPES["S2"]) == 2 * 100 * 64 * 2048 * 1024
    assert forward_flops(CELLS["rnn"], SHAPES["S1"]) == 2 * 500 * 32 * 32 * 64


def test_agreement_accepts_rounding_and_refuses_a_wrong_answer():
    rng = np.random.default_rng(0)
    expected = np.tanh(rng.standard_normal((5, 2, 3))).astype(np.float32)
    assert agreement(expected, expected) == (True, 0.0)
    assert agreement(expected + 1e-6, expected)[0]
    ok, diff = agreement(expected + 1e-3, expected)
    assert not ok and diff == pytest.approx(1e-3, rel=1e-3)
    assert agreement(expected + 1e-2, expected, "bfloat16")[0]  # bf16 products: ~1e-2 is fine
    assert not agreement(expected + 0.1, expected, "bfloat16")[0]
    assert agreement(expected[:4], expected) == (False, float("inf"))
    assert agreement(expected + 3e-2, expected, "int8")[0]  # int8 products: ~3e-2 is fine
    assert not agreement(expected + 0.1, expected, "int8")[0]
    assert set(PEER_TOLERANCES) == {"float32", "bfloat16", "int8"}


def test_step_problem_and_its_first_step():
    p = make_step_problem(64, "lstm")
    assert p.x.shape[1:] == (1, 64) and p.w_hh.shape == (256, 64) and p.c0.shape == (1, 64)
    one = first_step(p)
    assert one.shape.T == 1 and one.x.shape == (1, 1, 64)
    np.testing.assert_array_equal(one.x[0], p.x[0])
    assert p.shape.T > 1  # the cached problem itself is unchanged


def _row(cell, shape, ratios, own=0.1, pass_="fwd", n_threads=1):
    row = Row(cell, shape, pass_, n_threads)
    row.medians = {"cython": own, **{name: own * r for name, r in ratios.items()}}
    row.ratios = dict(ratios)
    row.best = "cython"
    row.best_peer = min(ratios, key=ratios.get) if ratios else None
    return row


def test_best_peer_summary_takes_the_median_of_each_rows_fastest_peer():
    rows = [_row("lstm", "S1", {"torch": 1.5, "ORT": 1.1}),   # fastest peer: ORT 1.1
            _row("lstm", "S3", {"torch": 0.9, "ORT": 1.4}),   # torch 0.9
            _row("gru", "S1", {"torch": 2.0, "ORT": 1.3}),    # ORT 1.3
            _row("gru", "S1", {"torch": 0.5}, pass_="fwdbwd")]
    lines = best_peer_summary(rows)
    assert lines[0].startswith("fwd, 1 thread(s): median over 3 rows of fastest peer time / fastrnn "
                               "time = 1.10, lowest 0.90")
    assert lines[0].endswith(f"(target median >= {BEST_PEER_MEDIAN_TARGET:g}: MISS)")
    assert lines[1].startswith("fwd+bwd, 1 thread(s): median over 1 rows") and "target" not in lines[1]
    rows = [_row("lstm", "S1", {"torch": 1.3}), _row("lstm", "S3", {"torch": 1.25})]
    assert best_peer_summary(rows)[0].endswith("ok)")


def test_efficiency_table_uses_the_rows_that_timed_an_sgemm():
    flops = forward_flops(CELLS["lstm"], SHAPES["S2"])
    own = flops / 90e9  # 90 GFLOP/s
    large = _row("lstm", "S2", {"torch": 1.25}, own=own)
    large.sgemm_gflops, large.peak_fraction = 100.0, 0.9
    rows = [large, _row("lstm", "S1", {"torch": 1.0})]  # a row without an sgemm is left out
    text = efficiency_table(rows, markdown=True)
    body = text.splitlines()[2:]
    assert len(body) == 1
    cells = [c.strip() for c in body[0].strip("|").split("|")]
    assert cells[:2] == ["lstm", "S2"]
    assert cells[4:9] == ["90.0", "100.0", "90%", "torch", "72.0"]
    assert cells[9] == f">={SGEMM_PEAK_TARGET:.0%} ok"
    large.peak_fraction = 0.89
    assert efficiency_table(rows, markdown=False).splitlines()[2].endswith("MISS")
    assert efficiency_table(rows[1:], markdown=False) is None


def test_only_large_forward_rows_at_one_thread_time_an_sgemm():
    assert is_large_row(Row("lstm", "S2", "fwd", 1)) and is_large_row(Row("gru", "S5", "fwd", 1))
    assert not is_large_row(Row("lstm", "S1", "fwd", 1))      # not a large shape
    assert not is_large_row(Row("gru", "S5", "fwd", 2))       # not 1 thread
    assert not is_large_row(Row("lstm", "S2", "fwdbwd", 1))   # not forward
    assert not is_large_row(Row("rnn", "S2", "fwd", 1))       # not a cell with the target


def test_sgemm_runner_multiplies():
    product = sgemm_runner(n=8)
    c = product().copy()
    assert product.flops == 2 * 8 ** 3 and c.shape == (8, 8) and c.dtype == np.float32
    assert np.abs(c).max() > 0


def test_issue_12_targets_cover_every_cell_shape_and_thread_count():
    for peer in ("torch", "ORT", "OV f32", "JAX"):
        for cell in CELLS:
            for n_threads in (1, 2):
                row = PEER_TARGETS[peer][cell][("fwd", n_threads)]
                assert set(row) == set(SHAPES) and min(row.values()) >= 1.0, (peer, cell, n_threads)
    for cell in CELLS:
        for n_threads in (1, 2):
            row = PEER_TARGETS["torch"][cell][("fwdbwd", n_threads)]
            assert set(row) == set(SHAPES) and min(row.values()) >= 1.0
    for n_threads in (1, 2):
        row = PEER_TARGETS["torch"]["lstm"][("fwdbwd", n_threads)]
        assert row["S1"] >= 1.5 and row["S3"] >= 1.5
    assert "OV default" not in PEER_TARGETS  # bfloat16 is shown, not targeted
    assert BEST_PEER_MEDIAN_TARGET == 1.2 and SGEMM_PEAK_TARGET == 0.9 and STREAMING_TARGET == 2.0
