"""Tests of ``python -m fastrnn demo``: the data sets of fastrnn.demo.data, each task's ``--quick``
run end to end, determinism, and ``--plot`` with and without matplotlib.

Nothing here times anything: the tasks' full sizes are exercised by running
the command, not by the test suite.
"""

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from fastrnn.__main__ import main
from fastrnn.demo import data, plotting, tasks
from tolerances import FLOAT32_REORDERED


def _letters(tags):
    """Tags as one letter per character, for readable comparisons."""
    return "".join("_nkscdo"[t] for t in tags)


# --------------------------------------------------------------------------------------
# sentences and the order task's data
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sentences():
    return data.doc_sentences()


def test_doc_sentences_are_lowercase_words_of_the_allowed_lengths(sentences):
    assert len(sentences) > 1000  # about 2,000 for CPython 3.11
    assert len(set(sentences)) == len(sentences)
    for words in sentences:
        assert 5 <= len(words) <= 40
        assert len(set(words)) >= 4
        assert all(word.islower() and word.replace("'", "").isalpha() for word in words)


def test_doc_sentences_drop_code_grammar_and_keep_prose():
    text = ("Assignment statements\n*********************\n\n"
            "Assignment statements are used to bind names to values and to\nmodify attributes.\n\n"
            "   assignment_stmt ::= (target_list \"=\")+ expression\n\n"
            ">>> x = 1\n>>> print(x)\n\n"
            "   Total = sum(x) for x in items if x > 0.\n\n"
            "The list is empty. The call \"len(x)\" returns *three* items.")
    assert data.doc_sentences(min_words=4, text=text) == [
        ("assignment", "statements", "are", "used", "to", "bind", "names", "to", "values", "and", "to",
         "modify", "attributes"),
        ("the", "list", "is", "empty"),
        ("the", "call", "len", "x", "returns", "three", "items"),  # inline literals count as words
    ]


def test_doc_sentences_are_deterministic(sentences):
    assert data.doc_sentences() == sentences


def test_shuffled_keeps_the_words_and_changes_the_order():
    rng = np.random.default_rng(0)
    words = ("the", "cat", "sat", "on", "the", "mat")
    for _ in range(20):
        mixed = data.shuffled(words, rng)
        assert mixed != words
        assert Counter(mixed) == Counter(words)
    assert data.shuffled(words, np.random.default_rng(3)) == data.shuffled(words, np.random.default_rng(3))
    with pytest.raises(ValueError, match="two or more different words"):
        data.shuffled(("a", "a", "a"), rng)


def test_word_encoder_ids_padding_and_suffixes():
    encoder = data.WordEncoder([("the", "cat", "the", "dog", "the", "cat")], n_words=2)
    assert encoder.index == {"the": 2, "cat": 3}  # most frequent first
    assert encoder.size == 4 + len(data.WordEncoder.SUFFIXES)
    ids = encoder.encode([("the", "cat"), ("cats", "walked", "zzz", "the", "cat")], maxlen=4)
    assert ids.dtype == np.int32 and ids.shape == (2, 4)
    s_id = encoder.first_suffix_id + data.WordEncoder.SUFFIXES.index("s")
    ed_id = encoder.first_suffix_id + data.WordEncoder.SUFFIXES.index("ed")
    np.testing.assert_array_equal(ids[0], [0, 0, 2, 3])  # padded at the front, like pad_sequences
    np.testing.assert_array_equal(ids[1], [ed_id, 1, 2, 3])  # truncated at the front
    assert encoder.word_id("dogs") == s_id


def test_order_pairs_are_balanced_and_hold_the_same_words(sentences):
    rng = np.random.default_rng(0)
    texts, labels = data.order_pairs(sentences[:10], 3, rng)
    assert len(texts) == len(labels) == 60
    assert labels.dtype == np.float32 and labels.sum() == 30
    for real, fake, y_real, y_fake in zip(texts[::2], texts[1::2], labels[::2], labels[1::2]):
        assert (y_real, y_fake) == (1.0, 0.0)
        assert real in sentences[:10] and fake != real and Counter(fake) == Counter(real)


def test_bag_of_words_counts_ids_and_ignores_padding():
    counts = data.bag_of_words(np.array([[0, 0, 2, 3, 2], [1, 1, 1, 1, 4]]), size=5)
    np.testing.assert_array_equal(counts, [[0, 0, 2, 1, 0], [0, 4, 0, 0, 1]])
    assert counts.dtype == np.float32


# --------------------------------------------------------------------------------------
# tagging Python source
# --------------------------------------------------------------------------------------
def test_tag_source_on_a_hand_written_snippet():
    source = 'def f(x=0x1F):  # hi\n    return x + 1.5 if x else "s"\n'
    expected = ("kkk_n" "o" "n" "o" "dddd" "oo" "__" "cccc" "_"
                "____" "kkkkkk" "_n_o_" "ddd" "_kk_n_" "kkkk" "_" "sss" "_")
    assert _letters(data.tag_source(source)) == expected


def test_tag_source_multiline_strings_soft_keywords_and_form_feeds():
    source = 'x = """a\nb"""\n\x0c\nmatch = None\n'
    tags = data.tag_source(source)
    assert tags.dtype == np.int8 and tags.shape == (len(source),)
    # the triple-quoted string spans two lines; "match" is a soft keyword, a name outside a match
    # statement; None is a keyword; the form feed does not shift the offsets of the next line
    assert _letters(tags) == "n_o_" + "s" * 9 + "_" + "__" + "nnnnn_o_kkkk_"


def test_stdlib_sources_are_deterministic_and_tagged():
    first = data.stdlib_sources(3)
    second = data.stdlib_sources(3)
    assert [name for name, _, _ in first] == [name for name, _, _ in second]
    assert len(first) == 3 and len({name for name, _, _ in first}) == 3
    for name, source, tags in first:
        assert name.endswith(".py")
        assert tags.shape == (len(source),)
        assert set(np.unique(tags)) <= set(range(len(data.TAG_NAMES)))
        assert (tags == data.TAG_NAMES.index("keyword")).any()


def test_char_encoder_round_trip_and_rare_characters():
    encoder = data.CharEncoder(["aaab", "ab"], min_count=2)
    assert encoder.size == 4  # padding, rare, a, b
    ids = encoder.encode("abz")
    np.testing.assert_array_equal(ids, [2, 3, 1])
    assert encoder.decode(np.array([2, 3, 1, 0])) == "ab\ufffd"


def test_tagging_windows_pad_the_last_window():
    x, y = data.tagging_windows(np.arange(1, 8), np.arange(7) % 3, length=3)
    assert x.shape == y.shape == (3, 3) and x.dtype == np.int32
    np.testing.assert_array_equal(x, [[1, 2, 3], [4, 5, 6], [7, 0, 0]])
    np.testing.assert_array_equal(y[2], [0, 0, 0])


def test_language_model_windows_targets_are_the_next_ids():
    ids = np.arange(1, 21)
    x, y = data.language_model_windows(ids, length=6)
    assert x.shape == y.shape == (3, 6)
    np.testing.assert_array_equal(y, x + 1)
    x, _ = data.language_model_windows(ids, length=6, step=2)
    assert x.shape == (7, 6) and x[1, 0] == 3


# --------------------------------------------------------------------------------------
# the adding problem
# --------------------------------------------------------------------------------------
def test_adding_problem_shapes_markers_and_targets():
    x, y = data.adding_problem(50, 12, np.random.default_rng(0))
    assert x.shape == (50, 12, 2) and y.shape == (50, 1)
    assert x.dtype == y.dtype == np.float32
    markers = x[:, :, 1]
    assert np.all(markers.sum(axis=1) == 2)
    assert np.all(markers[:, :6].sum(axis=1) == 1) and np.all(markers[:, 6:].sum(axis=1) == 1)
    np.testing.assert_allclose(y[:, 0], (x[:, :, 0] * markers).sum(axis=1), **FLOAT32_REORDERED)
    again, _ = data.adding_problem(50, 12, np.random.default_rng(0))
    np.testing.assert_array_equal(x, again)
    with pytest.raises(ValueError, match="at least 2 steps"):
        data.adding_problem(5, 1, np.random.default_rng(0))


# --------------------------------------------------------------------------------------
# the tasks, --quick, end to end
# --------------------------------------------------------------------------------------
def _run_quick(task, **kwargs):
    lines = []
    result = tasks.TASKS[task](tasks.Settings(quick=True, verbose=0, out=lines.append, **kwargs))
    return result, "\n".join(lines)


def test_order_quick_reports_accuracy_and_the_bag_of_words_baseline():
    result, report = _run_quick("order")
    assert "test accuracy" in report and "bag-of-words" in report and "trained in" in report
    assert 0.0 <= result.metrics["test_accuracy"] <= 1.0
    # both classes hold the same words: counts cannot tell them apart
    assert 0.4 <= result.metrics["baseline_accuracy"] <= 0.6
    assert set(result.curves) == {"loss", "accuracy"}
    assert len(result.curves["loss"]["training"]) == 2 == len(result.curves["accuracy"]["validation"])


def test_tagging_quick_reports_accuracy_per_class():
    result, report = _run_quick("tagging", cell="lstm")
    for name in data.TAG_NAMES:
        assert f"accuracy_{name}" in result.metrics
        assert name in report
    assert 0.0 <= result.metrics["test_accuracy"] <= 1.0
    assert "Bidirectional(LSTM(8))" in report


def test_charlm_quick_reports_perplexity_and_samples():
    result, report = _run_quick("charlm", cell="gru")
    assert result.metrics["val_perplexity"] > 1.0
    assert "validation perplexity" in report
    assert report.count("sampled at temperature") == 2
    assert "\n  The " in report  # the samples continue the prompt


def test_memory_quick_prints_the_table_and_is_deterministic():
    result, report = _run_quick("memory", lengths=(4, 8))
    for cell in ("SimpleRNN", "LSTM", "GRU", "always 1.0"):
        assert f"\n  {cell}" in report
    for length in (4, 8):
        assert 0.05 < result.metrics[f"baseline_mse_{length}"] < 0.4
        for cell in ("simplernn", "lstm", "gru"):
            assert np.isfinite(result.metrics[f"mse_{cell}_{length}"])
    again, _ = _run_quick("memory", lengths=(4, 8))
    different_seed, _ = _run_quick("memory", lengths=(4, 8), seed=1)
    mse = {k: v for k, v in result.metrics.items() if k.startswith("mse_")}
    assert mse == {k: v for k, v in again.metrics.items() if k.startswith("mse_")}
    assert mse != {k: v for k, v in different_seed.metrics.items() if k.startswith("mse_")}


def test_order_quick_is_deterministic_given_the_seed():
    first, _ = _run_quick("order", epochs=1)
    second, _ = _run_quick("order", epochs=1)
    assert first.metrics["test_loss"] == second.metrics["test_loss"]


def test_command_line_runs_with_progress_bars():
    # a fresh interpreter, as a user runs it; fit's progress bars go to stdout
    completed = subprocess.run([sys.executable, "-m", "fastrnn", "demo", "--quick", "--epochs", "1"],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "Epoch 1/1" in completed.stdout
    assert "test accuracy" in completed.stdout and "demo order: done in" in completed.stdout


def test_help_describes_every_task(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for task in tasks.TASKS:
        assert task in text
    assert "pydoc_data.topics" in text and "tokenize" in text and "perplexity" in text


# --------------------------------------------------------------------------------------
# --plot
# --------------------------------------------------------------------------------------
def test_plot_without_matplotlib_fails_before_training(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(plotting.PlotUnavailableError, match="pip install matplotlib"):
        plotting.require_matplotlib()
    called = []
    monkeypatch.setitem(tasks.TASKS, "order", lambda settings: called.append(settings))
    assert main(["demo", "--quick", "--plot", "curves.png"]) == 2
    assert "pip install matplotlib" in capsys.readouterr().err
    assert called == []


def test_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    assert main(["demo", "--task", "memory", "--quick", "--no-progress", "--lengths", "4",
                 "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "training curves written to" in capsys.readouterr().out


# --------------------------------------------------------------------------------------
# which backend runs: the first thing the demo says
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["python", "numba", "cython"])
def test_demo_first_line_names_the_backend_that_runs(backend, capsys):
    import fastrnn

    if backend not in fastrnn.available_backends():
        pytest.skip(f"backend {backend} does not load here")
    assert main(["demo", "--quick", "--no-progress", "--backend", backend]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("fastrnn ") and f"running on the {backend} backend" in first, first


def test_auto_backend_line_is_the_one_calls_resolve_to(capsys):
    from fastrnn import _backends

    assert main(["demo", "--quick", "--no-progress"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert f"running on the {_backends.resolve()[0]} backend" in first, first
