"""``python -m fastrnn demo --precision bf16|int8``: the test metric in reduced precision next to float32.

The issue's promise: a demo task's test accuracy stays within 1 point, its
perplexity within 1 %, when the trained model's recurrent layers run in int8
or bf16. Checked on ``--quick`` runs (seconds); the full sizes are run by hand.
"""

import pytest

import fastrnn
from fastrnn.__main__ import main
from fastrnn.demo import tasks


def _run_quick(task, **kwargs):
    lines = []
    result = tasks.TASKS[task](tasks.Settings(quick=True, verbose=0, out=lines.append, **kwargs))
    return result, "\n".join(lines)


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_tagging_accuracy_in_reduced_precision_is_within_one_point(precision):
    # trained enough to be right on most characters (about 83 %), yet a run of seconds
    sizes = dict(epochs=8, samples=1500, units=32) if precision == "int8" else {}
    result, report = _run_quick("tagging", precision=precision, **sizes)
    float32 = result.metrics["test_accuracy"]
    reduced = result.metrics[f"test_accuracy_{precision}"]
    assert abs(reduced - float32) <= 0.01, (float32, reduced)
    assert f"tagging: test accuracy in {precision} " in report and " points)" in report


def test_charlm_perplexity_in_int8_is_within_one_percent():
    result, report = _run_quick("charlm", precision="int8")
    float32 = result.metrics["val_perplexity_evaluated"]
    reduced = result.metrics["val_perplexity_int8"]
    assert float32 == pytest.approx(result.metrics["val_perplexity"], rel=1e-4)  # as fit measured it
    assert abs(reduced - float32) <= 0.01 * float32, (float32, reduced)
    assert "charlm: validation perplexity in int8 " in report


def test_float32_adds_nothing():
    result, report = _run_quick("memory", lengths=(4,), epochs=1)
    assert not any(key.endswith(("_bf16", "_int8")) for key in result.metrics)
    assert " in float32 " not in report


def test_memory_prints_a_row_per_cell_in_the_precision():
    result, report = _run_quick("memory", lengths=(4,), epochs=1, precision="bf16")
    for cell in ("simplernn", "lstm", "gru"):
        assert result.metrics[f"mse_{cell}_4_bf16"] == pytest.approx(result.metrics[f"mse_{cell}_4"], rel=0.05)
    assert report.count("\n    bf16") == 3


def test_compare_formats_points_and_percent():
    settings = tasks.Settings(precision="int8")
    assert tasks._compare(settings, "test accuracy", 0.85, 0.845, "%") == (
        "test accuracy in int8 84.5% (float32 85.0%: -0.50 points)")
    assert tasks._compare(settings, "perplexity", 4.0, 4.02, "") == (
        "perplexity in int8 4.02 (float32 4: +0.50 %)")


def test_command_line_refuses_a_precision_it_cannot_run_before_training(monkeypatch, capsys):
    monkeypatch.delattr(fastrnn, "quantize", raising=False)
    called = []
    monkeypatch.setitem(tasks.TASKS, "order", lambda settings: called.append(settings))
    assert main(["demo", "--quick", "--precision", "int8"]) == 2
    assert "no fastrnn.quantize" in capsys.readouterr().err
    assert called == []


def test_command_line_passes_the_precision_on(monkeypatch, capsys):
    seen = []
    monkeypatch.setitem(tasks.TASKS, "order", lambda settings: seen.append(settings) or tasks.Result("order"))
    assert main(["demo", "--quick", "--no-progress", "--precision", "bf16"]) == 0
    assert seen[0].precision == "bf16"
    with pytest.raises(SystemExit):
        main(["demo", "--precision", "fp8"])
    assert "invalid choice" in capsys.readouterr().err
