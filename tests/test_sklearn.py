"""fastrnn.sklearn's estimators: scikit-learn's own estimator checks, the three input kinds, training
(reproducible, incremental, stopping early), and use in Pipeline, GridSearchCV, cross_val_score and
dask-ml's ParallelPostFit.

scikit-learn (and dask-ml) are optional: every test imports them through ``pytest.importorskip``.
"""

import pathlib
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest

from fastrnn.exceptions import ArgumentError, ShapeError
from tolerances import FLOAT32_REORDERED


@pytest.fixture
def sk():
    """fastrnn.sklearn (skips without scikit-learn)."""
    pytest.importorskip("sklearn")
    import fastrnn.sklearn

    return fastrnn.sklearn


def sequences(n=120, T=8, D=3, seed=0):
    """Sequences ``(n, T, D)`` and a class per sample: which third of the range the first feature's
    mean over time falls in (learnable by any of the cells in a few epochs)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T, D))
    score = X[:, :, 0].mean(axis=1)
    y = np.where(score < -0.15, "low", np.where(score > 0.15, "high", "mid"))
    return X, y


def same_weights(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a.model_.get_weights(), b.model_.get_weights()))


# -- scikit-learn's estimator checks ------------------------------------------------------------------
#: Checks that fail by design for some configurations, with the reason (scikit-learn's own mechanism:
#: they run as expected failures, never skipped).
_SMALL_DATA = ("the check fits on 10 to 20 samples: too few to hold out a validation set (one sample per "
               "class, or 2 for R²); early_stopping=True refuses it with an ArgumentError naming "
               "validation_fraction")
_SUBSET = ("a row's float32 prediction may change in its last bit (~1e-7) with the number of rows in the "
           "batch: the Dense head is one NumPy/BLAS matrix product whose kernel depends on the row count, "
           "and the check's tolerance is 1e-7 (the recurrent layers themselves are batch-invariant)")


def expected_failed_checks(estimator):
    from sklearn.base import is_classifier

    expected = {"check_methods_subset_invariance": _SUBSET, "check_methods_sample_order_invariance": _SUBSET}
    if estimator.early_stopping:  # which checks use data too small to split: found by running them
        small = ("check_estimators_nan_inf", "check_fit2d_1feature") + (
            ("check_dont_overwrite_parameters", "check_n_features_in_after_fitting", "check_dict_unchanged",
             "check_f_contiguous_array_estimator", "check_fit2d_predict1d") if is_classifier(estimator) else
            ("check_regressors_no_decision_function",))
        expected.update(dict.fromkeys(small, _SMALL_DATA))
    return expected


def _check_estimators():
    """The estimators the checks run on: both kinds, every cell, stacked, bidirectional, stopping early."""
    try:
        import fastrnn.sklearn as sk
    except ImportError:
        return []
    return [sk.RNNClassifier(hidden_sizes=8, epochs=10, learning_rate=0.01, random_state=0),
            sk.RNNRegressor(hidden_sizes=8, epochs=30, learning_rate=0.03, random_state=0),
            sk.RNNClassifier(cell="gru", hidden_sizes=(8, 4), bidirectional=True, dropout=0.1, early_stopping=True,
                             epochs=10, learning_rate=0.01, random_state=0),
            sk.RNNRegressor(cell="rnn", hidden_sizes=8, early_stopping=True, epochs=30, learning_rate=0.03,
                            random_state=0)]


def _checks():
    try:
        from sklearn.utils.estimator_checks import estimator_checks_generator
    except ImportError:
        return []
    cases = []
    for number, estimator in enumerate(_check_estimators()):
        for item in estimator_checks_generator(estimator, legacy=True, mark="xfail",
                                               expected_failed_checks=expected_failed_checks(estimator)):
            # an expected failure comes as a pytest.param carrying its xfail mark and reason
            (est, check), marks = (item.values, item.marks) if hasattr(item, "marks") else (item, ())
            name = getattr(check, "func", check).__name__
            cases.append(pytest.param(est, check, marks=marks, id=f"{type(estimator).__name__}{number}-{name}"))
    return cases


@pytest.mark.parametrize("estimator, check", _checks())
def test_sklearn_estimator_check(estimator, check):
    pytest.importorskip("sklearn")
    check(estimator)


def test_the_checks_run_and_only_the_declared_ones_fail(sk):
    """check_estimator's own report: every check not declared passes (skipped ones say why)."""
    from sklearn.utils.estimator_checks import check_estimator

    for estimator in _check_estimators()[:2]:
        expected = expected_failed_checks(estimator)
        results = check_estimator(estimator, on_fail=None, expected_failed_checks=expected)
        assert len(results) > 40
        failed = [r["check_name"] for r in results if r["status"] == "failed"]
        assert not failed, failed
        for result in results:
            if result["status"] == "skipped":
                assert result["check_name"] == "check_array_api_input"  # needs SCIPY_ARRAY_API=1


# -- the three kinds of input -------------------------------------------------------------------------
def test_classifier_learns_multiclass_string_labels_from_sequences(sk):
    X, y = sequences()
    clf = sk.RNNClassifier(hidden_sizes=16, epochs=30, learning_rate=0.01, random_state=0).fit(X, y)
    assert clf.classes_.tolist() == ["high", "low", "mid"]
    assert clf.n_features_in_ == 8 and clf.sequence_shape_ == (8, 3)
    proba = clf.predict_proba(X)
    assert proba.shape == (120, 3) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    prediction = clf.predict(X)
    assert prediction.dtype == y.dtype
    np.testing.assert_array_equal(prediction, clf.classes_[proba.argmax(axis=1)])
    assert clf.score(X, y) > 0.9
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), proba, rtol=1e-12)
    assert len(clf.loss_curve_) == clf.n_iter_ and clf.loss_curve_[-1] < clf.loss_curve_[0]


def test_binary_labels_keep_their_type_and_use_one_sigmoid_unit(sk):
    X, y = sequences()
    labels = np.where(y == "high", 1, -1)
    clf = sk.RNNClassifier(cell="gru", hidden_sizes=16, epochs=30, learning_rate=0.01, random_state=0).fit(X, labels)
    assert clf.classes_.tolist() == [-1, 1]
    assert clf.model_.layers[-1].units == 1
    proba = clf.predict_proba(X)
    assert proba.shape == (120, 2)
    assert set(clf.predict(X)) <= {-1, 1}
    assert clf.score(X, labels) > 0.9


def test_token_ids_go_through_an_embedding(sk):
    rng = np.random.default_rng(1)
    X = rng.integers(1, 20, (160, 12))
    y = (X == 7).any(axis=1)
    clf = sk.RNNClassifier(vocab_size=20, embedding_dim=8, hidden_sizes=16, epochs=25, learning_rate=0.01,
                           random_state=0).fit(X, y)
    assert type(clf.model_.layers[0]).__name__ == "Embedding"
    assert clf.score(X, y) > 0.9
    same = sk.RNNClassifier(vocab_size=20, embedding_dim=8, hidden_sizes=16, epochs=25, learning_rate=0.01,
                            random_state=0).fit(X.astype(np.float64), y)  # integral floats are ids too
    assert same_weights(clf, same)
    with pytest.raises(ArgumentError, match=r"token ids.*\[0, vocab_size=20\).*0 to 20"):
        clf.predict(np.where(X == 7, 20, X) * (X > 1))
    with pytest.raises(ArgumentError, match="must be integers"):
        clf.predict(X + 0.5)
    with pytest.raises(ShapeError, match=r"\(n_samples, T\) token ids"):
        sk.RNNClassifier(vocab_size=20).fit(X[:, :, None], y)


def test_univariate_series_are_sequences_of_one_feature(sk):
    rng = np.random.default_rng(2)
    series = rng.standard_normal((80, 15))
    target = series.mean(axis=1)
    flat = sk.RNNRegressor(hidden_sizes=8, epochs=5, random_state=3).fit(series, target)
    shaped = sk.RNNRegressor(hidden_sizes=8, epochs=5, random_state=3).fit(series[:, :, None], target)
    assert same_weights(flat, shaped)  # the same network on the same numbers
    np.testing.assert_array_equal(flat.predict(series), shaped.predict(series[:, :, None]))
    assert flat.n_features_in_ == 15 and flat.sequence_shape_ == (15,)


def test_regressor_takes_one_or_several_targets(sk):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((150, 10, 2))
    y = np.stack([X[:, :, 0].mean(axis=1), X[:, :, 1].max(axis=1)], axis=1)
    reg = sk.RNNRegressor(hidden_sizes=16, epochs=40, learning_rate=0.01, random_state=0).fit(X, y)
    assert reg.n_outputs_ == 2 and reg.predict(X).shape == (150, 2)
    assert reg.score(X, y) > 0.7
    one = sk.RNNRegressor(hidden_sizes=16, epochs=40, learning_rate=0.01, random_state=0).fit(X, y[:, 0])
    assert one.predict(X).shape == (150,)
    assert one.score(X, y[:, 0]) > 0.8


def test_bad_input_is_refused_naming_the_argument(sk):
    X, y = sequences(n=20)
    for name, value in (("cell", "transformer"), ("hidden_sizes", (8, 0)), ("optimizer", "lbfgs"),
                        ("dropout", 1.0), ("epochs", 0), ("batch_size", 1.5), ("learning_rate", 0),
                        ("early_stopping", "yes")):
        with pytest.raises(ArgumentError, match=name):
            sk.RNNClassifier(**{name: value}).fit(X, y)
    with pytest.raises(ShapeError, match=r"X must be .* got 4 dimensions"):
        sk.RNNClassifier(epochs=1).fit(X[:, :, :, None], y)
    clf = sk.RNNClassifier(hidden_sizes=4, epochs=1, random_state=0).fit(X, y)
    with pytest.raises(ShapeError, match=r"X must have samples of shape \(8, 3\) \(as in fit\); got \(8, 2\)"):
        clf.predict(X[:, :, :2])
    with pytest.raises(ArgumentError, match="at least 2 classes"):
        sk.RNNClassifier(epochs=1).fit(X, np.zeros(20))
    with pytest.raises(ArgumentError, match="validation_fraction=0.1 of the 20 samples"):
        sk.RNNClassifier(epochs=1, early_stopping=True).fit(X, y)


# -- training -----------------------------------------------------------------------------------------
def test_random_state_makes_fit_reproducible_bit_for_bit(sk):
    X, y = sequences(n=60)
    options = dict(cell="lstm", hidden_sizes=(8, 6), bidirectional=True, dropout=0.2, epochs=3)
    first = sk.RNNClassifier(random_state=5, **options).fit(X, y)
    again = sk.RNNClassifier(random_state=5, **options).fit(X, y)
    assert same_weights(first, again) and first.loss_curve_ == again.loss_curve_
    other = sk.RNNClassifier(random_state=6, **options).fit(X, y)
    assert not same_weights(first, other)
    threads = sk.RNNClassifier(random_state=5, n_threads=2, **options).fit(X, y)
    assert same_weights(first, threads)  # results do not depend on the kernel threads
    refit = first.fit(X, y)  # a second fit starts over from random_state
    assert same_weights(refit, again)


def test_partial_fit_is_one_epoch_and_needs_the_classes_first(sk):
    X, y = sequences(n=60)
    with pytest.raises(ArgumentError, match="classes must be given on the first call"):
        sk.RNNClassifier().partial_fit(X, y)
    stepped = sk.RNNClassifier(hidden_sizes=8, random_state=1)
    stepped.partial_fit(X, y, classes=["low", "mid", "high"])
    assert stepped.n_iter_ == 1
    assert same_weights(stepped, sk.RNNClassifier(hidden_sizes=8, epochs=1, random_state=1).fit(X, y))
    stepped.partial_fit(X[:30], y[:30])
    assert stepped.n_iter_ == 2 and len(stepped.loss_curve_) == 2
    with pytest.raises(ArgumentError, match="classes of the first call"):
        stepped.partial_fit(X, y, classes=["low", "high"])
    with pytest.raises(ArgumentError, match=r"not in classes_.*'other'"):
        stepped.partial_fit(X[:2], ["low", "other"])
    reg = sk.RNNRegressor(hidden_sizes=8, random_state=1)
    reg.partial_fit(X, X[:, 0, 0]).partial_fit(X, X[:, 0, 0])
    assert reg.n_iter_ == 2
    with pytest.raises(ShapeError, match="1 target"):
        reg.partial_fit(X, X[:, 0, :2])


def test_training_stops_when_the_loss_or_the_validation_score_stops_improving(sk):
    X, y = sequences(n=100)
    clf = sk.RNNClassifier(hidden_sizes=8, epochs=50, tol=1e9, n_iter_no_change=2, random_state=0).fit(X, y)
    # the first epoch improves on nothing (best_loss_ starts at inf), the next 3 do not improve by tol
    assert clf.n_iter_ == 4
    clf = sk.RNNClassifier(hidden_sizes=8, epochs=40, learning_rate=0.01, early_stopping=True,
                           validation_fraction=0.3, n_iter_no_change=3, random_state=0).fit(X, y)
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.loss_curve_)
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    # the weights kept are the best epoch's: its validation score, recomputed on the same split
    from sklearn.model_selection import train_test_split

    _, X_val, _, y_val = train_test_split(X, y, test_size=0.3, stratify=y, random_state=clf._split_seed)
    assert clf.score(X_val, y_val) == clf.best_validation_score_


def test_verbose_prints_each_epoch(sk, capsys):
    X, y = sequences(n=30)
    sk.RNNRegressor(hidden_sizes=4, epochs=2, verbose=1, random_state=0).fit(X, X[:, 0, 0])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == ["Epoch 1", "Epoch 2"]


def test_params_clone_and_pickle(sk):
    from sklearn.base import clone

    X, y = sequences(n=40)
    clf = sk.RNNClassifier(cell="gru", hidden_sizes=(6, 4), epochs=2, random_state=0)
    params = clf.get_params()
    assert params["hidden_sizes"] == (6, 4) and params["cell"] == "gru"
    clf.set_params(bidirectional=True, epochs=3)
    assert clf.bidirectional and clf.epochs == 3
    clf.fit(X, y)
    copy = clone(clf)
    assert copy.get_params() == clf.get_params() and not hasattr(copy, "model_")
    assert same_weights(copy.fit(X, y), clf)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    restored.partial_fit(X, y)
    clf.partial_fit(X, y)
    assert same_weights(restored, clf)


# -- in scikit-learn's and dask-ml's machinery ---------------------------------------------------------
def test_pipeline_grid_search_and_cross_val_score(sk):
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    X, y = sequences(n=90)
    flat = X.reshape(len(X), -1)  # a table, as a scikit-learn pipeline passes it
    pipeline = make_pipeline(StandardScaler(), FunctionTransformer(lambda a: a.reshape(len(a), 8, 3)),
                             sk.RNNClassifier(hidden_sizes=8, epochs=15, learning_rate=0.01, random_state=0))
    search = GridSearchCV(pipeline, {"rnnclassifier__cell": ["lstm", "gru"],
                                     "rnnclassifier__hidden_sizes": [4, 8]}, cv=2)
    search.fit(flat, y)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_estimator_.predict(flat).shape == (90,)
    scores = cross_val_score(sk.RNNRegressor(hidden_sizes=8, epochs=20, learning_rate=0.01, random_state=0),
                             X, X[:, :, 0].mean(axis=1), cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.5)


def test_parallel_post_fit_predicts_a_dask_array(sk):
    """dask-ml treats X as a table (n_samples, n_features): series and token ids go in as they are,
    sequences flattened to (n_samples, T * D) and reshaped by a Pipeline step."""
    pytest.importorskip("dask_ml")
    import dask.array as da
    from dask_ml.wrappers import ParallelPostFit
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = sequences(n=100)
    series = X[:, :, 0]
    wrapped = ParallelPostFit(sk.RNNClassifier(hidden_sizes=8, epochs=5, random_state=0)).fit(series, y)
    lazy = da.from_array(series, chunks=(25, 8))
    labels, proba = wrapped.predict(lazy), wrapped.predict_proba(lazy)
    assert isinstance(labels, da.Array) and labels.chunks == ((25,) * 4,)
    assert proba.chunks == ((25,) * 4, (3,))
    np.testing.assert_array_equal(labels.compute(), wrapped.estimator.predict(series))
    np.testing.assert_allclose(proba.compute(), wrapped.estimator.predict_proba(series), **FLOAT32_REORDERED)

    pipeline = make_pipeline(FunctionTransformer(lambda a: a.reshape(len(a), 8, 3)),
                             sk.RNNRegressor(hidden_sizes=8, epochs=5, random_state=0))
    flat = X.reshape(100, -1)
    wrapped = ParallelPostFit(pipeline).fit(flat, X[:, :, 0].mean(axis=1))
    predicted = wrapped.predict(da.from_array(flat, chunks=(50, 24)))
    assert isinstance(predicted, da.Array) and predicted.chunks == ((50, 50),)
    np.testing.assert_allclose(predicted.compute(), pipeline.predict(flat), **FLOAT32_REORDERED)


# -- the README and the optional dependency -------------------------------------------------------------
def test_the_readme_example_runs(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    pytest.importorskip("dask_ml")
    pytest.importorskip("distributed")
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### scikit-learn", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_without_sklearn_fastrnn_imports_and_the_error_names_the_extra():
    code = ("import sys; sys.modules['sklearn'] = None\n"
            "import fastrnn, fastrnn.keras\n"
            "try:\n    import fastrnn.sklearn\nexcept ImportError as error:\n    print(error)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'install the "sklearn" extra (pip install "fastrnn[sklearn]")' in result.stdout
