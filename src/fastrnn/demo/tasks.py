"""The demo's tasks: for each, build a fastrnn.keras model, train it with ``fit`` and report.

One function per task (:func:`order`, :func:`tagging`, :func:`charlm`,
:func:`memory`), each taking a :class:`Settings` and returning a
:class:`Result`; the data comes from :mod:`fastrnn.demo.data`. What a task
prints goes through ``settings.out`` (``print`` by default), except for
``fit``'s own progress bars.
"""

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from fastrnn.demo import data

__all__ = ["Settings", "Result", "TASKS", "order", "tagging", "charlm", "memory"]


@dataclass
class Settings:
    """What the command line lets a user choose; ``None`` means the task's own default.

    Attributes
    ----------
    epochs, units, batch_size, samples : int or None
        ``samples`` is the task's size knob: sentences (order), training
        windows (tagging, charlm) or training sequences (memory).
    cell : {"lstm", "gru"} or None
        Recurrent cell of the tagging and charlm tasks.
    lengths : tuple of int or None
        Sequence lengths of the memory task.
    backend : str or None
        fastrnn backend of the recurrent layers; None for automatic.
    threads : int or None
        ``n_threads`` of the recurrent layers.
    seed : int
    precision : {"float32", "bf16", "int8"}
        After training (in float32), the test metric is also computed with the
        recurrent layers' inference in this precision (:func:`fastrnn.quantize`).
    train_precision : {"float32", "bf16"}
        With ``"bf16"``, a second model (same initial weights, data and
        shuffling) is trained with its recurrent layers in bf16 (mixed
        precision: bf16 products, float32 master weights), and its loss per
        epoch and test metric are reported next to the float32 model's.
    quick : bool
        Tiny sizes, for tests: seconds, not minutes.
    verbose : {1, 2, 0}
        ``fit``'s: a progress bar per epoch, a line per epoch, or nothing.
    out : callable
        Where the report lines go.
    """

    epochs: Optional[int] = None
    units: Optional[int] = None
    batch_size: Optional[int] = None
    samples: Optional[int] = None
    cell: Optional[str] = None
    lengths: Optional[tuple] = None
    backend: Optional[str] = None
    threads: Optional[int] = None
    seed: int = 0
    precision: str = "float32"
    train_precision: str = "float32"
    quick: bool = False
    verbose: int = 1
    out: Callable = print

    def pick(self, name, default, quick):
        """The user's value of ``name``, else the task's default (``quick`` with ``--quick``)."""
        value = getattr(self, name)
        if value is not None:
            return value
        return quick if self.quick else default


@dataclass
class Result:
    """What a task measured.

    Attributes
    ----------
    task : str
    metrics : dict of str to float
        The final numbers the report prints.
    curves : dict of str to dict of str to list of float
        Panel title -> line label -> one value per epoch (what ``--plot`` draws).
    seconds : float
        Wall time of the whole task, data preparation included.
    log_y : bool
        Whether the curves read best on a logarithmic scale.
    """

    task: str
    metrics: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)
    seconds: float = 0.0
    log_y: bool = False


# --------------------------------------------------------------------------------------
# shared parts
# --------------------------------------------------------------------------------------
def _keras():
    # imported when a task runs, so that `--help` stays fast
    from fastrnn import keras
    from fastrnn.keras import layers

    return keras, layers


def _layer_seeds(seed, n):
    """``n`` independent integer seeds for the layers' initializers, derived from ``seed``."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


def _recurrent_options(settings, precision="float32"):
    options = {"backend": settings.backend, "n_threads": settings.threads}
    if precision != "float32":
        options["precision"] = precision
    return options


def _train_copy(settings, build, x, y, **fit_kwargs):
    """The model ``build(settings.train_precision)`` trained like the float32 one, or None.

    ``build(precision)`` returns the task's model, compiled, with its recurrent layers in
    ``precision`` and the same initializer seeds as the float32 model; ``_fit`` seeds the
    shuffling alike, so the two runs differ by the precision of training alone.

    Returns
    -------
    (model, history, seconds) or None
        None when ``settings.train_precision`` is float32.
    """
    if settings.train_precision == "float32":
        return None
    model = build(settings.train_precision)
    history, seconds = _fit(model, settings, x, y, **fit_kwargs)
    return model, history, seconds


def _loss_lines(settings, task, float32, reduced, seconds32, seconds):
    """The training loss per epoch of the float32 and the reduced-precision run, as a small table."""
    width = max(9, max(len(f"{v:.4f}") for v in [*float32, *reduced]) + 2)
    label = f"{settings.train_precision} training"
    lines = [f"{task}: training loss per epoch, float32 training against {label} "
             f"(trained in {_format_seconds(seconds32)} and {_format_seconds(seconds)})",
             "  " + f"{'epoch':<16}" + "".join(f"{k + 1:>{width}}" for k in range(len(float32)))]
    for name, values in (("float32", float32), (label, reduced)):
        lines.append("  " + f"{name:<16}" + "".join(f"{v:>{width}.4f}" for v in values))
    return lines


def _trained_compare(settings, what, float32, reduced, unit):
    """One line: a metric of the model trained in ``settings.train_precision`` next to float32 training's."""
    return _compare(settings, what, float32, reduced, unit, f"{settings.train_precision} training")


def _add_training_curve(curves, settings, history):
    """The reduced-precision run's training loss as one more line of the ``loss`` panel."""
    curves["loss"][f"training ({settings.train_precision} training)"] = history["loss"]


def _fit(model, settings, x, y, **kwargs):
    """``model.fit`` with the global NumPy seed set (fit shuffles with it); returns (history, seconds)."""
    np.random.seed(settings.seed)
    started = time.perf_counter()
    history = model.fit(x, y, verbose=settings.verbose, **kwargs)
    return history.history, time.perf_counter() - started


def _in_precision(model, settings):
    """``model`` with its recurrent layers' inference in ``settings.precision``, or None for float32.

    A copy (:func:`fastrnn.quantize`): the weights are converted once, ``model`` is unchanged.
    """
    if settings.precision == "float32":
        return None
    import fastrnn

    return fastrnn.quantize(model, settings.precision)


def _compare(settings, what, float32, reduced, unit, label=None):
    """One line: a metric in ``settings.precision`` next to its float32 value and the difference.

    ``unit`` is ``"%"`` for accuracies (values in [0, 1], the difference in points) or
    ``""`` for other metrics (the difference relative, in per cent). ``label`` replaces
    ``settings.precision`` after "in".
    """
    label = label or settings.precision
    if unit == "%":
        return (f"{what} in {label} {reduced:.1%} (float32 {float32:.1%}: "
                f"{100 * (reduced - float32):+.2f} points)")
    return (f"{what} in {label} {reduced:.4g} (float32 {float32:.4g}: "
            f"{100 * (reduced - float32) / float32:+.2f} %)")


def _train_and_validation_curves(history, metric):
    """Panels ``loss`` and ``metric``, each with its training and validation line."""
    curves = {}
    for key in ("loss", metric):
        panel = {"training": history[key]}
        if f"val_{key}" in history:
            panel["validation"] = history[f"val_{key}"]
        curves[key] = panel
    return curves


def _split(n, fractions, rng):
    """Random disjoint index sets of the given fractions of ``range(n)`` (the last takes the rest)."""
    order = rng.permutation(n)
    bounds = np.cumsum([int(round(f * n)) for f in fractions[:-1]])
    return np.split(order, bounds)


def _logistic_regression(x_train, y_train, steps=300, learning_rate=0.5, l2=1e-3):
    """Weights and bias of an L2-regularised logistic regression fitted by full-batch gradient descent.

    Parameters
    ----------
    x_train : ndarray of shape (N, F)
    y_train : ndarray of shape (N,)
        0 or 1.

    Returns
    -------
    w : ndarray of shape (F,)
    b : float
    """
    x = np.asarray(x_train, dtype=np.float64)
    y = np.asarray(y_train, dtype=np.float64)
    scale = x.std(axis=0) + 1e-8  # standardised features make one learning rate fit all
    x = x / scale
    w = np.zeros(x.shape[1])
    b = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
        error = p - y
        w -= learning_rate * (x.T @ error / len(y) + l2 * w)
        b -= learning_rate * error.mean()
    return w / scale, b


def _format_seconds(seconds):
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# --------------------------------------------------------------------------------------
# order: real sentences against shuffled ones
# --------------------------------------------------------------------------------------
def order(settings):
    """Tell real English sentences from the same words shuffled, with Embedding -> SimpleRNN -> Dense.

    Sentences come from :func:`fastrnn.demo.data.doc_sentences` and are split
    by sentence into training (70 %), validation (10 %) and test (20 %) sets,
    so that no test sentence, nor any shuffle of it, is seen in training.
    A logistic regression on word counts is the order-blind baseline: both
    classes hold exactly the same words, so it can do no better than chance.

    Parameters
    ----------
    settings : Settings
        ``samples`` caps the number of sentences.

    Returns
    -------
    Result
        Metrics ``test_accuracy``, ``test_loss``, ``final_loss`` (the last epoch's training
        loss), ``baseline_accuracy``, ``train_seconds``; with a reduced ``settings.precision``
        also ``test_accuracy_<precision>`` and ``test_loss_<precision>``; with
        ``settings.train_precision`` bf16 also ``test_accuracy_trained_bf16``,
        ``test_loss_trained_bf16`` and ``final_loss_trained_bf16``.
    """
    started = time.perf_counter()
    keras, layers = _keras()
    out = settings.out
    epochs = settings.pick("epochs", 15, 2)
    units = settings.pick("units", 32, 8)
    batch_size = settings.pick("batch_size", 32, 32)
    n_sentences = settings.pick("samples", None, 240)
    shuffles = 2 if settings.quick else 8  # negatives per training sentence, drawn once
    n_words, maxlen = 100, 30

    rng = np.random.default_rng(settings.seed)
    sentences = data.doc_sentences()
    if n_sentences is not None:
        sentences = [sentences[i] for i in np.sort(rng.permutation(len(sentences))[:n_sentences])]
    train_rows, val_rows, test_rows = _split(len(sentences), (0.7, 0.1, 0.2), rng)
    train = [sentences[i] for i in train_rows]
    encoder = data.WordEncoder(train, n_words)

    def pairs(rows, k):
        texts, labels = data.order_pairs([sentences[i] for i in rows], k, rng)
        return encoder.encode(texts, maxlen), labels

    x_train, y_train = pairs(train_rows, shuffles)
    x_val, y_val = pairs(val_rows, 1)
    x_test, y_test = pairs(test_rows, 1)
    out(f"order: {len(sentences)} sentences from pydoc_data.topics ({len(train_rows)} train, "
        f"{len(val_rows)} validation, {len(test_rows)} test), each next to a shuffle of its words "
        f"({shuffles} shuffles per training sentence): x_train {x_train.shape}, x_test {x_test.shape}")
    example = sentences[test_rows[0]]
    out(f"  real:     {' '.join(example)}")
    out(f"  shuffled: {' '.join(data.shuffled(example, np.random.default_rng(settings.seed)))}")

    seeds = _layer_seeds(settings.seed, 3)

    def build(precision="float32"):
        model = keras.Sequential([
            layers.Embedding(encoder.size, 32, seed=seeds[0]),
            # dropout on the inputs: with about 1,400 training sentences the model memorises them otherwise
            layers.SimpleRNN(units, dropout=0.3, seed=seeds[1], **_recurrent_options(settings, precision)),
            layers.Dense(1, activation="sigmoid", seed=seeds[2]),
        ])
        model.compile(loss="binary_crossentropy", optimizer="rmsprop", metrics=["accuracy"])
        model.build((None, maxlen))
        return model

    model = build()
    model.summary(print_fn=out)
    fit_kwargs = dict(batch_size=batch_size, epochs=epochs, validation_data=(x_val, y_val))
    history, train_seconds = _fit(model, settings, x_train, y_train, **fit_kwargs)
    test_loss, test_accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)

    # the order-blind baseline sees the same ids, as counts
    w, b = _logistic_regression(data.bag_of_words(x_train, encoder.size), y_train)
    baseline_train = float(np.mean(((data.bag_of_words(x_train, encoder.size) @ w + b) > 0) == y_train))
    baseline_test = float(np.mean(((data.bag_of_words(x_test, encoder.size) @ w + b) > 0) == y_test))

    probabilities = model.predict(x_test[:4], verbose=0)[:, 0]
    out("order: P(real) on test examples:")
    for row in range(min(4, len(x_test))):
        words = " ".join(_decode_words(encoder, x_test[row]))
        out(f"  {probabilities[row]:.2f}  {'real    ' if y_test[row] else 'shuffled'}  {words}")
    out(f"order: SimpleRNN({units}) test accuracy {test_accuracy:.1%} (loss {test_loss:.3f}); "
        f"bag-of-words logistic regression: {baseline_test:.1%} test, {baseline_train:.1%} train "
        f"(chance 50 %: the words alone do not tell a sentence from its shuffle)")
    metrics = {"test_accuracy": float(test_accuracy), "test_loss": float(test_loss),
               "final_loss": float(history["loss"][-1]),
               "baseline_accuracy": baseline_test, "baseline_train_accuracy": baseline_train,
               "train_seconds": train_seconds}
    reduced = _in_precision(model, settings)
    if reduced is not None:
        loss, accuracy = reduced.evaluate(x_test, y_test, batch_size=256, verbose=0)
        metrics[f"test_accuracy_{settings.precision}"] = float(accuracy)
        metrics[f"test_loss_{settings.precision}"] = float(loss)
        out(f"order: {_compare(settings, 'test accuracy', float(test_accuracy), float(accuracy), '%')}")
    curves = _train_and_validation_curves(history, "accuracy")
    trained = _train_copy(settings, build, x_train, y_train, **fit_kwargs)
    if trained is not None:
        other, other_history, other_seconds = trained
        loss, accuracy = other.evaluate(x_test, y_test, batch_size=256, verbose=0)
        p = settings.train_precision
        metrics.update({f"test_accuracy_trained_{p}": float(accuracy), f"test_loss_trained_{p}": float(loss),
                        f"final_loss_trained_{p}": float(other_history["loss"][-1])})
        for line in _loss_lines(settings, "order", history["loss"], other_history["loss"], train_seconds,
                                other_seconds):
            out(line)
        line = _trained_compare(settings, "test accuracy", float(test_accuracy), float(accuracy), "%")
        out(f"order: {line}")
        _add_training_curve(curves, settings, other_history)
    seconds = time.perf_counter() - started
    out(f"order: trained in {_format_seconds(train_seconds)}, {_format_seconds(seconds)} in all")
    return Result("order", metrics, curves, seconds)


def _decode_words(encoder, ids):
    """Readable words of one encoded row (rare words shown as ``<-suffix>`` or ``<?>``)."""
    names = {i: w for w, i in encoder.index.items()}
    names[1] = "<?>"
    for k, suffix in enumerate(encoder.SUFFIXES):
        names[encoder.first_suffix_id + k] = f"<-{suffix}>"
    return [names[int(i)] for i in ids if i != 0]


# --------------------------------------------------------------------------------------
# tagging: the token class of every character of Python source
# --------------------------------------------------------------------------------------
def tagging(settings):
    """Tag every character of Python source with its token class, with a bidirectional RNN.

    Standard-library files (:func:`fastrnn.demo.data.stdlib_sources`) are cut
    into windows of 80 characters; three files in four train, the others are
    held out for the test. The model is Embedding(mask_zero=True) ->
    Bidirectional(GRU or LSTM, return_sequences=True) ->
    TimeDistributed(Dense(softmax)).

    Parameters
    ----------
    settings : Settings
        ``samples`` caps the number of training windows; ``cell`` picks GRU (default) or LSTM.

    Returns
    -------
    Result
        Metrics ``test_accuracy``, ``accuracy_<class>`` for each class, ``final_loss`` (the last
        epoch's training loss), ``train_seconds``; with a reduced ``settings.precision`` also
        ``test_accuracy_<precision>``; with ``settings.train_precision`` bf16 also
        ``test_accuracy_trained_bf16`` and ``final_loss_trained_bf16``.
    """
    started = time.perf_counter()
    keras, layers = _keras()
    out = settings.out
    epochs = settings.pick("epochs", 8, 2)
    units = settings.pick("units", 32, 8)
    batch_size = settings.pick("batch_size", 32, 32)
    n_windows = settings.pick("samples", 3000, 150)
    cell = (settings.cell or "gru").lower()
    n_files, length = (8, 40) if settings.quick else (24, 80)

    rng = np.random.default_rng(settings.seed)
    files = data.stdlib_sources(n_files)
    held_out = set(range(3, len(files), 4))  # every fourth file: spread over the alphabet
    train_files = [f for i, f in enumerate(files) if i not in held_out]
    test_files = [f for i, f in enumerate(files) if i in held_out]
    encoder = data.CharEncoder([source for _, source, _ in train_files], min_count=2)

    def windows(chosen):
        pieces = [data.tagging_windows(encoder.encode(source), tags, length) for _, source, tags in chosen]
        return np.concatenate([p[0] for p in pieces]), np.concatenate([p[1] for p in pieces])

    x_train, y_train = windows(train_files)
    if n_windows < len(x_train):
        keep = rng.permutation(len(x_train))[:n_windows]
        x_train, y_train = x_train[keep], y_train[keep]
    x_test, y_test = windows(test_files)
    out(f"tagging: {len(files)} standard-library files, {len(train_files)} for training "
        f"({len(x_train)} windows of {length} characters), {len(test_files)} held out "
        f"({', '.join(name for name, _, _ in test_files)}); classes: {', '.join(data.TAG_NAMES)}")

    seeds = _layer_seeds(settings.seed, 3)
    recurrent = {"gru": layers.GRU, "lstm": layers.LSTM}[cell]

    def build(precision="float32"):
        model = keras.Sequential([
            layers.Embedding(encoder.size, 16, mask_zero=True, seed=seeds[0]),
            layers.Bidirectional(recurrent(units, return_sequences=True, seed=seeds[1],
                                           **_recurrent_options(settings, precision))),
            layers.TimeDistributed(layers.Dense(len(data.TAG_NAMES), activation="softmax", seed=seeds[2])),
        ])
        model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.Adam(0.005),
                      metrics=["accuracy"])
        model.build((None, length))
        return model

    model = build()
    model.summary(print_fn=out)
    fit_kwargs = dict(batch_size=batch_size, epochs=epochs, validation_split=0.1)
    history, train_seconds = _fit(model, settings, x_train, y_train, **fit_kwargs)

    real = x_test != 0

    def accuracy_of(trained):
        predicted = trained.predict(x_test, batch_size=256, verbose=0).argmax(axis=-1)
        return predicted, float((((predicted == y_test) & real).sum()) / real.sum())

    predicted, test_accuracy = accuracy_of(model)
    correct = (predicted == y_test) & real
    metrics = {"test_accuracy": test_accuracy, "final_loss": float(history["loss"][-1]),
               "train_seconds": train_seconds}
    out("tagging: accuracy per class on the held-out files")
    out(f"  {'class':<10}{'characters':>12}{'accuracy':>10}")
    for k, name in enumerate(data.TAG_NAMES):
        of_class = real & (y_test == k)
        accuracy = float(correct[of_class].sum() / of_class.sum()) if of_class.any() else float("nan")
        metrics[f"accuracy_{name}"] = accuracy
        out(f"  {name:<10}{int(of_class.sum()):>12}{accuracy:>10.1%}")
    out(f"  {'all':<10}{int(real.sum()):>12}{test_accuracy:>10.1%}")
    reduced = _in_precision(model, settings)
    if reduced is not None:
        accuracy = accuracy_of(reduced)[1]
        metrics[f"test_accuracy_{settings.precision}"] = accuracy
        out(f"tagging: {_compare(settings, 'test accuracy', test_accuracy, accuracy, '%')}")
    curves = _train_and_validation_curves(history, "accuracy")
    trained = _train_copy(settings, build, x_train, y_train, **fit_kwargs)
    if trained is not None:
        other, other_history, other_seconds = trained
        accuracy = accuracy_of(other)[1]
        p = settings.train_precision
        metrics.update({f"test_accuracy_trained_{p}": accuracy,
                        f"final_loss_trained_{p}": float(other_history["loss"][-1])})
        for line in _loss_lines(settings, "tagging", history["loss"], other_history["loss"], train_seconds,
                                other_seconds):
            out(line)
        out(f"tagging: {_trained_compare(settings, 'test accuracy', test_accuracy, accuracy, '%')}")
        _add_training_curve(curves, settings, other_history)
    _show_tagged_line(out, encoder, x_test, y_test, predicted)
    seconds = time.perf_counter() - started
    out(f"tagging: Bidirectional({cell.upper()}({units})) trained in {_format_seconds(train_seconds)}, "
        f"{_format_seconds(seconds)} in all")
    return Result("tagging", metrics, curves, seconds)


def _show_tagged_line(out, encoder, x, y, predicted):
    """Print one held-out window, with the true and predicted class of each character as a letter."""
    letters = "_nkscdo"  # other, name, keyword, string, comment, digits (number), operator
    # the window with the most kinds of tokens is the most telling one
    row = int(np.argmax([len(np.unique(tags)) for tags in y]))
    keep = x[row] != 0
    text = encoder.decode(x[row]).replace("\n", "⏎").replace("\t", "⇥")
    out("tagging: one held-out window (_ other, n name, k keyword, s string, c comment, d number, o operator)")
    out(f"  source:    {text}")
    out(f"  tokenize:  {''.join(letters[t] for t in y[row][keep])}")
    out(f"  predicted: {''.join(letters[t] for t in predicted[row][keep])}")


# --------------------------------------------------------------------------------------
# charlm: a character-level language model
# --------------------------------------------------------------------------------------
def charlm(settings):
    """Predict the next character of the documentation text with two stacked recurrent layers.

    The text (:func:`fastrnn.demo.data.doc_text`) is split into its first 90 %
    for training and last 10 % for validation, cut into windows of 64
    characters whose targets are the same windows shifted by one. The model is
    Embedding -> GRU/LSTM -> GRU/LSTM (return_sequences=True) ->
    TimeDistributed(Dense(softmax)); after training, text is sampled one
    character at a time from ``predict``'s distribution at a few temperatures.

    Parameters
    ----------
    settings : Settings
        ``samples`` caps the number of training windows; ``cell`` picks LSTM (default) or GRU.

    Returns
    -------
    Result
        Metrics ``val_perplexity``, ``val_loss``, ``train_seconds`` (plus the
        perplexity of a uniform guess and of character frequencies alone), ``final_loss``
        (the last epoch's training loss); with a reduced ``settings.precision`` also
        ``val_perplexity_<precision>``, ``val_loss_<precision>`` and
        ``val_perplexity_evaluated`` (float32, from ``evaluate`` like the former); with
        ``settings.train_precision`` bf16 also ``val_perplexity_trained_bf16``,
        ``val_loss_trained_bf16`` and ``final_loss_trained_bf16`` (from its ``fit``).
    """
    started = time.perf_counter()
    keras, layers = _keras()
    out = settings.out
    epochs = settings.pick("epochs", 5, 1)
    units = settings.pick("units", 96, 16)
    batch_size = settings.pick("batch_size", 32, 32)
    n_windows = settings.pick("samples", 4000, 60)
    cell = (settings.cell or "lstm").lower()
    length = 32 if settings.quick else 64
    n_sample_chars = 60 if settings.quick else 300

    rng = np.random.default_rng(settings.seed)
    text = data.squeeze_whitespace(data.doc_text())
    split_at = int(len(text) * 0.9)
    encoder = data.CharEncoder([text[:split_at]], min_count=20)  # rare characters share one id
    ids = encoder.encode(text)
    x_train, y_train = data.language_model_windows(ids[:split_at], length)
    x_val, y_val = data.language_model_windows(ids[split_at:], length)
    if n_windows < len(x_train):
        keep = np.sort(rng.permutation(len(x_train))[:n_windows])
        x_train, y_train = x_train[keep], y_train[keep]
    n_val = min(len(x_val), max(50, n_windows // 5))
    x_val, y_val = x_val[:n_val], y_val[:n_val]
    out(f"charlm: {len(text):,} characters of pydoc_data.topics, {encoder.size - 2} distinct characters "
        f"kept; {len(x_train)} training windows and {len(x_val)} validation windows of {length} "
        f"characters (validation from the last 10 % of the text)")

    seeds = _layer_seeds(settings.seed, 4)
    recurrent = {"gru": layers.GRU, "lstm": layers.LSTM}[cell]

    def build(precision="float32"):
        model = keras.Sequential([
            layers.Embedding(encoder.size, 32, seed=seeds[0]),
            recurrent(units, return_sequences=True, seed=seeds[1], **_recurrent_options(settings, precision)),
            recurrent(units, return_sequences=True, seed=seeds[2], **_recurrent_options(settings, precision)),
            layers.TimeDistributed(layers.Dense(encoder.size, activation="softmax", seed=seeds[3])),
        ])
        model.compile(loss="sparse_categorical_crossentropy",
                      optimizer=keras.optimizers.Adam(0.01, clipnorm=1.0), metrics=["accuracy"])
        model.build((None, length))
        return model

    model = build()
    model.summary(print_fn=out)
    fit_kwargs = dict(batch_size=batch_size, epochs=epochs, validation_data=(x_val, y_val))
    history, train_seconds = _fit(model, settings, x_train, y_train, **fit_kwargs)
    val_loss = history["val_loss"][-1]
    perplexity = math.exp(val_loss)
    # what perplexity means here: a uniform guess, and character frequencies with no context
    frequencies = np.bincount(y_train.reshape(-1), minlength=encoder.size) + 1.0
    frequencies /= frequencies.sum()
    unigram = float(np.exp(-np.mean(np.log(frequencies[y_val.reshape(-1)]))))
    out(f"charlm: validation perplexity {perplexity:.2f} (cross-entropy {val_loss / math.log(2):.2f} bits "
        f"per character); character frequencies alone: {unigram:.2f}; a uniform guess: "
        f"{encoder.size - 2}")
    reduced_metrics = {}
    reduced = _in_precision(model, settings)
    if reduced is not None:
        # both from evaluate, so the two numbers differ by the precision alone
        float_loss = float(model.evaluate(x_val, y_val, batch_size=256, verbose=0)[0])
        reduced_loss = float(reduced.evaluate(x_val, y_val, batch_size=256, verbose=0)[0])
        reduced_metrics = {f"val_perplexity_{settings.precision}": math.exp(reduced_loss),
                           f"val_loss_{settings.precision}": reduced_loss,
                           "val_perplexity_evaluated": math.exp(float_loss)}
        line = _compare(settings, "validation perplexity", math.exp(float_loss), math.exp(reduced_loss), "")
        out(f"charlm: {line}")
    curves = _train_and_validation_curves(history, "accuracy")
    trained = _train_copy(settings, build, x_train, y_train, **fit_kwargs)
    if trained is not None:
        _, other_history, other_seconds = trained
        p = settings.train_precision
        other_loss = float(other_history["val_loss"][-1])
        reduced_metrics.update({f"val_perplexity_trained_{p}": math.exp(other_loss),
                                f"val_loss_trained_{p}": other_loss,
                                f"final_loss_trained_{p}": float(other_history["loss"][-1])})
        for line in _loss_lines(settings, "charlm", history["loss"], other_history["loss"], train_seconds,
                                other_seconds):
            out(line)
        line = _trained_compare(settings, "validation perplexity", perplexity, math.exp(other_loss), "")
        out(f"charlm: {line}")
        _add_training_curve(curves, settings, other_history)

    prompt = "The "
    temperatures = (0.5, 1.0)
    samples = _sample(model, encoder, prompt, temperatures, n_sample_chars, length,
                      np.random.default_rng(settings.seed))
    for temperature, sample in zip(temperatures, samples):
        out(f"charlm: sampled at temperature {temperature}:")
        out("  " + sample.replace("\n", "\n  "))
    seconds = time.perf_counter() - started
    out(f"charlm: 2 x {cell.upper()}({units}) trained in {_format_seconds(train_seconds)}, "
        f"{_format_seconds(seconds)} in all")
    curves["perplexity"] = {name: [math.exp(v) for v in curves["loss"][name]] for name in curves["loss"]}
    return Result("charlm", {"val_perplexity": perplexity, "val_loss": float(val_loss),
                             "final_loss": float(history["loss"][-1]),
                             "unigram_perplexity": unigram, "train_seconds": train_seconds,
                             **reduced_metrics},
                  curves, seconds)


def _sample(model, encoder, prompt, temperatures, n_chars, length, rng):
    """Text that continues ``prompt``, one character at a time, one row per temperature.

    Each step predicts on the last ``length`` characters of every row at once
    and draws the next character from ``p ** (1 / temperature)``, renormalised.

    Returns
    -------
    list of str
        ``prompt`` and ``n_chars`` sampled characters, one per temperature.
    """
    rows = np.tile(encoder.encode(prompt), (len(temperatures), 1))
    inverse = 1.0 / np.asarray(temperatures)[:, None]
    for _ in range(n_chars):
        window = rows[:, -length:]
        p = model.predict(window, verbose=0)[:, -1, :].astype(np.float64)
        p[:, 0] = 0.0  # never padding
        logits = np.log(np.maximum(p, 1e-12)) * inverse
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        chosen = [rng.choice(p.shape[1], p=row) for row in p]
        rows = np.concatenate([rows, np.asarray(chosen, dtype=rows.dtype)[:, None]], axis=1)
    return [encoder.decode(row) for row in rows]


# --------------------------------------------------------------------------------------
# memory: the adding problem at growing lengths
# --------------------------------------------------------------------------------------
def memory(settings):
    """SimpleRNN against LSTM and GRU on the adding problem, at growing sequence lengths.

    For each length and cell, a model ``cell(units) -> Dense(1)`` is trained
    with the MSE loss on :func:`fastrnn.demo.data.adding_problem`; the table
    gives the test MSE next to 0.167, the MSE of always answering 1.0. A cell
    that remembers the two marked values goes far below it; one that forgets
    stays near it. (An LSTM needs more epochs than a GRU as the length grows:
    at length 150 twenty epochs are not enough for it.)

    Parameters
    ----------
    settings : Settings
        ``samples`` is the number of training sequences; ``lengths`` the sequence lengths.

    Returns
    -------
    Result
        Metrics ``mse_<cell>_<length>``, ``loss_<cell>_<length>`` (the last epoch's training
        loss), ``baseline_mse_<length>``, ``train_seconds``; with a reduced
        ``settings.precision`` also ``mse_<cell>_<length>_<precision>``; with
        ``settings.train_precision`` bf16 also ``mse_<cell>_<length>_trained_bf16`` and
        ``loss_<cell>_<length>_trained_bf16`` (from a model trained in bf16).
    """
    started = time.perf_counter()
    keras, layers = _keras()
    out = settings.out
    epochs = settings.pick("epochs", 20, 2)
    units = settings.pick("units", 32, 8)
    batch_size = settings.pick("batch_size", 32, 32)
    n_train = settings.pick("samples", 3000, 128)
    lengths = tuple(settings.lengths or ((5, 10) if settings.quick else (10, 50, 100)))
    n_test = max(64, n_train // 4)
    cells = ("SimpleRNN", "LSTM", "GRU")
    out(f"memory: the adding problem, {n_train} training and {n_test} test sequences per length; "
        f"{', '.join(cells)} with {units} units at lengths {', '.join(map(str, lengths))}")

    metrics, curves, train_seconds = {}, {}, 0.0
    for length in lengths:
        rng = np.random.default_rng([settings.seed, length])
        x_train, y_train = data.adding_problem(n_train, length, rng)
        x_test, y_test = data.adding_problem(n_test, length, rng)
        baseline = float(np.mean((y_test - 1.0) ** 2))
        metrics[f"baseline_mse_{length}"] = baseline
        panel = curves.setdefault(f"validation MSE, length {length}", {})
        for k, name in enumerate(cells):
            out(f"memory: {name}, length {length}")
            seeds = _layer_seeds([settings.seed, length, k], 2)

            def build(precision="float32"):
                model = keras.Sequential([
                    getattr(layers, name)(units, seed=seeds[0], **_recurrent_options(settings, precision)),
                    layers.Dense(1, seed=seeds[1]),
                ])
                # clipping keeps SimpleRNN's exploding gradients from wrecking the comparison
                model.compile(loss="mse", optimizer=keras.optimizers.Adam(0.005, clipnorm=1.0))
                return model

            model = build()
            fit_kwargs = dict(batch_size=batch_size, epochs=epochs, validation_split=0.1)
            history, spent = _fit(model, settings, x_train, y_train, **fit_kwargs)
            train_seconds += spent
            key = f"{name.lower()}_{length}"
            metrics[f"mse_{key}"] = float(model.evaluate(x_test, y_test, batch_size=256, verbose=0))
            metrics[f"loss_{key}"] = float(history["loss"][-1])
            reduced = _in_precision(model, settings)
            if reduced is not None:
                metrics[f"mse_{key}_{settings.precision}"] = float(
                    reduced.evaluate(x_test, y_test, batch_size=256, verbose=0))
            panel[name] = history["val_loss"]
            trained = _train_copy(settings, build, x_train, y_train, **fit_kwargs)
            if trained is not None:
                other, other_history, _ = trained
                p = settings.train_precision
                metrics[f"mse_{key}_trained_{p}"] = float(other.evaluate(x_test, y_test, batch_size=256,
                                                                         verbose=0))
                metrics[f"loss_{key}_trained_{p}"] = float(other_history["loss"][-1])
                panel[f"{name} ({p} training)"] = other_history["val_loss"]
        panel["always 1.0"] = [baseline] * epochs

    out("memory: test MSE on the adding problem (lower is better; always answering 1.0 gives the baseline)")
    out("  " + f"{'length':<16}" + "".join(f"{length:>10}" for length in lengths))
    for name in cells:
        out("  " + f"{name:<16}" + "".join(f"{metrics[f'mse_{name.lower()}_{length}']:>10.4f}"
                                           for length in lengths))
        if settings.precision != "float32":
            key = f"mse_{name.lower()}_{{}}_{settings.precision}"
            out("  " + f"{'  ' + settings.precision:<16}"
                + "".join(f"{metrics[key.format(length)]:>10.4f}" for length in lengths))
        if settings.train_precision != "float32":
            key = f"mse_{name.lower()}_{{}}_trained_{settings.train_precision}"
            out("  " + f"{'  ' + settings.train_precision + ' trained':<16}"
                + "".join(f"{metrics[key.format(length)]:>10.4f}" for length in lengths))
    out("  " + f"{'always 1.0':<16}" + "".join(f"{metrics[f'baseline_mse_{length}']:>10.4f}"
                                               for length in lengths))
    metrics["train_seconds"] = train_seconds
    seconds = time.perf_counter() - started
    out(f"memory: {len(cells) * len(lengths)} models trained in {_format_seconds(train_seconds)}, "
        f"{_format_seconds(seconds)} in all")
    return Result("memory", metrics, curves, seconds, log_y=True)


TASKS = {"order": order, "tagging": tagging, "charlm": charlm, "memory": memory}
"""Task name -> function, in the order ``--help`` lists them."""
