"""scikit-learn estimators over fastrnn's recurrent networks: :class:`RNNClassifier` and :class:`RNNRegressor`.

Each estimator builds a :class:`fastrnn.keras.Sequential` -- an optional ``Embedding``, one
recurrent layer per entry of ``hidden_sizes`` (each optionally ``Bidirectional``), a ``Dense``
head -- and trains it with that model's ``compile``/``fit``, one epoch per ``fit`` call, so
that the order of the samples comes from ``random_state`` rather than from NumPy's global
generator. Around that loop sit scikit-learn's conventions: parameters stored unchanged by
the constructor, input validation, ``classes_``, ``partial_fit``, and stopping when the
training loss (or, with ``early_stopping``, the validation score) stops improving, with the
names and meaning :class:`sklearn.neural_network.MLPClassifier` gives them.

Inputs, batch first:

* ``(n_samples, T, D)`` float arrays: sequences of ``D`` features;
* ``(n_samples, T)`` float arrays: univariate series (each step one feature);
* ``(n_samples, T)`` integer token ids in ``[0, vocab_size)`` when ``vocab_size`` is set
  (an ``Embedding`` of ``embedding_dim`` comes first).

scikit-learn is an optional dependency (the ``sklearn`` extra: ``pip install
"fastrnn[sklearn]"``); importing this module without it raises an ImportError that says so.
"""

import numbers
import sys

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError as error:  # validate_data and __sklearn_tags__ arrived in scikit-learn 1.6
    raise ImportError('fastrnn.sklearn needs scikit-learn >= 1.6: install the "sklearn" extra '
                      '(pip install "fastrnn[sklearn]")') from error

from fastrnn.exceptions import ArgumentError, ShapeError
from fastrnn.keras import Sequential, layers, optimizers

__all__ = ["RNNClassifier", "RNNRegressor"]

_CELLS = {"lstm": layers.LSTM, "gru": layers.GRU, "rnn": layers.SimpleRNN}
_OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
_SEED_LIMIT = np.iinfo(np.int32).max


# -- parameters -------------------------------------------------------------------------------

def _integer(name, value, low, optional=False):
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ArgumentError(f"{name} must be an integer >= {low}{' or None' if optional else ''}; got {value!r}")
    return int(value)


def _real(name, value, low, high, high_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value <= high \
            or (high_open and value == high):
        raise ArgumentError(f"{name} must be a number in [{low}, {high}{')' if high_open else ']'}; got {value!r}")
    return float(value)


def _hidden_sizes(value):
    sizes = (value,) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value
    try:
        sizes = tuple(sizes)
    except TypeError:
        sizes = None
    if not sizes or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in sizes):
        raise ArgumentError(f"hidden_sizes must be a positive integer or a non-empty sequence of them (one per "
                            f"stacked recurrent layer); got {value!r}")
    return tuple(int(s) for s in sizes)


class _RNNEstimator(BaseEstimator):
    """What the classifier and the regressor share: parameters, input checks, the network, the epoch loop.

    A subclass gives the head (``_head``: units, activation, loss), ``fit``/``partial_fit``
    (which turn ``y`` into the targets the model takes) and the early-stopping score
    (``_score_network`` on the held-out samples, whose targets ``_score_targets`` gives back).
    """

    def __init__(self, cell="lstm", hidden_sizes=(32,), bidirectional=False, dropout=0.0, epochs=20,
                 batch_size=32, optimizer="adam", learning_rate=0.001, shuffle=True, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, tol=1e-4, vocab_size=None, embedding_dim=32,
                 random_state=None, verbose=0, n_threads=None):
        self.cell = cell
        self.hidden_sizes = hidden_sizes
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.shuffle = shuffle
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.random_state = random_state
        self.verbose = verbose
        self.n_threads = n_threads

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True  # (n_samples, T, D) sequences
        tags.input_tags.allow_nan = False
        return tags

    def _check_params(self):
        """The parameters, checked (each error names its parameter) before anything is trained."""
        if not isinstance(self.cell, str) or self.cell.lower() not in _CELLS:
            raise ArgumentError(f"cell must be one of {', '.join(map(repr, _CELLS))}; got {self.cell!r}")
        if not isinstance(self.optimizer, str) or self.optimizer.lower() not in _OPTIMIZERS:
            raise ArgumentError(f"optimizer must be one of {', '.join(map(repr, _OPTIMIZERS))}; got {self.optimizer!r}")
        for name in ("bidirectional", "shuffle", "early_stopping"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ArgumentError(f"{name} must be True or False; got {getattr(self, name)!r}")
        _hidden_sizes(self.hidden_sizes)
        _real("dropout", self.dropout, 0.0, 1.0, high_open=True)
        _integer("epochs", self.epochs, 1)
        _integer("batch_size", self.batch_size, 1)
        _integer("n_iter_no_change", self.n_iter_no_change, 1)
        if not isinstance(self.verbose, (bool, np.bool_)):  # True/False, or a level as scikit-learn takes
            _integer("verbose", self.verbose, 0)
        _integer("n_threads", self.n_threads, 1, optional=True)
        _integer("vocab_size", self.vocab_size, 1, optional=True)
        _integer("embedding_dim", self.embedding_dim, 1)
        if isinstance(self.learning_rate, bool) or not isinstance(self.learning_rate, numbers.Real) \
                or not self.learning_rate > 0:
            raise ArgumentError(f"learning_rate must be a positive number; got {self.learning_rate!r}")
        if isinstance(self.tol, bool) or not isinstance(self.tol, numbers.Real) or self.tol < 0:
            raise ArgumentError(f"tol must be a non-negative number; got {self.tol!r}")
        if self.early_stopping:
            _real("validation_fraction", self.validation_fraction, 0.0, 1.0, high_open=True)
            if self.validation_fraction == 0:
                raise ArgumentError("validation_fraction must be > 0 with early_stopping=True; got 0")

    # -- input ----------------------------------------------------------------------------------
    def _validate_X(self, X, y="no_validation", reset=True):
        """``X`` as the network takes it -- ``(n, T, D)`` float32, or ``(n, T)`` int64 token ids -- and
        ``y`` checked alongside (``reset`` records the input's shape, else it must match fit's)."""
        tokens = self.vocab_size is not None
        options = dict(reset=reset, allow_nd=True, dtype="numeric" if tokens else np.float32)
        if isinstance(y, str) and y == "no_validation":
            X = validate_data(self, X, **options)
        else:
            X, y = validate_data(self, X, y, multi_output=self._multi_output, y_numeric=not self._classifier,
                                 **options)
        if X.ndim > 3:
            raise ShapeError(f"X must be (n_samples, T, D) sequences or (n_samples, T) series; got {X.ndim} "
                             f"dimensions, shape {X.shape}")
        if tokens:
            X = self._check_tokens(X)
        if reset:
            self.sequence_shape_ = X.shape[1:]
        elif X.shape[1:] != self.sequence_shape_:
            raise ShapeError(f"X must have samples of shape {self.sequence_shape_} (as in fit); got "
                             f"{X.shape[1:]}")
        if not tokens and X.ndim == 2:
            X = X[:, :, np.newaxis]  # univariate series: one feature per step
        return X if isinstance(y, str) and y == "no_validation" else (X, y)

    def _check_tokens(self, X):
        if X.ndim != 2:
            raise ShapeError(f"X must be (n_samples, T) token ids when vocab_size is set; got shape {X.shape}")
        if X.dtype.kind == "f":
            if not np.all(np.isfinite(X)) or not np.array_equal(X, np.round(X)):
                raise ArgumentError("X holds token ids (vocab_size is set) and must be integers; got non-integer "
                                    "values")
        elif X.dtype.kind not in "iu":
            raise ArgumentError(f"X holds token ids (vocab_size is set) and must be integers; got dtype {X.dtype}")
        if X.size and (X.min() < 0 or X.max() >= self.vocab_size):
            raise ArgumentError(f"X holds token ids, which must be in [0, vocab_size={self.vocab_size}); got "
                                f"values from {X.min()} to {X.max()}")
        return X.astype(np.int64, copy=False)

    # -- the network ----------------------------------------------------------------------------
    def _build_model(self, n_outputs, seeds):
        """The Sequential model, compiled; ``seeds`` gives one int per layer (weights, dropout masks)."""
        seeds = iter(seeds)
        stack = []
        if self.vocab_size is not None:
            stack.append(layers.Embedding(self.vocab_size, self.embedding_dim, seed=int(next(seeds))))
        sizes = _hidden_sizes(self.hidden_sizes)
        cell = _CELLS[self.cell.lower()]
        for index, units in enumerate(sizes):
            layer = cell(units, dropout=float(self.dropout), return_sequences=index < len(sizes) - 1,
                         seed=int(next(seeds)), n_threads=self.n_threads)
            stack.append(layers.Bidirectional(layer) if self.bidirectional else layer)
        units, activation, loss = self._head(n_outputs)
        stack.append(layers.Dense(units, activation=activation, seed=int(next(seeds))))
        model = Sequential(stack)
        optimizer = optimizers.get(self.optimizer.lower())
        optimizer = type(optimizer)(learning_rate=float(self.learning_rate))
        model.compile(optimizer=optimizer, loss=loss)
        return model

    def _n_layers(self):
        return len(_hidden_sizes(self.hidden_sizes)) + 1 + (self.vocab_size is not None)

    def _initialize(self, n_outputs):
        """A new network and training state (a fresh fit, or partial_fit's first call)."""
        random_state = check_random_state(self.random_state)
        seeds = random_state.randint(_SEED_LIMIT, size=self._n_layers() + 2)
        self.model_ = self._build_model(n_outputs, seeds[2:])
        self._shuffle_rng = np.random.default_rng(int(seeds[0]))
        self._split_seed = int(seeds[1])
        self.n_iter_ = 0
        self.loss_curve_ = []
        self.best_loss_ = np.inf
        self.validation_scores_ = None
        self.best_validation_score_ = None
        self._no_improvement_count = 0

    # -- training -------------------------------------------------------------------------------
    def _epoch(self, X, y):
        """One pass over ``(X, y)`` in mini-batches; returns its mean loss."""
        if self.shuffle:
            order = self._shuffle_rng.permutation(len(X))
            X, y = X[order], y[order]
        history = self.model_.fit(X, y, batch_size=int(self.batch_size), epochs=1, shuffle=False, verbose=0)
        return float(history.history["loss"][-1])

    def _fit(self, X, y, incremental):
        """Train: ``epochs`` epochs (one for partial_fit), stopping early as MLPClassifier does."""
        early_stopping = self.early_stopping and not incremental
        validation = None
        if early_stopping:
            held_out = int(np.ceil(self.validation_fraction * len(X)))
            needed = len(self.classes_) if self._classifier else 2  # each class once; R² needs 2 samples
            if held_out < needed or held_out >= len(X):
                raise ArgumentError(f"early_stopping holds out validation_fraction={self.validation_fraction} of the "
                                    f"{len(X)} samples: {held_out}, which must be at least {needed} "
                                    f"({'one per class' if self._classifier else 'for R²'}) and leave some to "
                                    "train on; give more samples, change validation_fraction or set "
                                    "early_stopping=False")
            stratify = y if self._classifier else None
            X, X_val, y, y_val = train_test_split(X, y, test_size=self.validation_fraction, stratify=stratify,
                                                  random_state=self._split_seed)
            validation = (X_val, self._score_targets(y_val))
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            best_weights = None
        for _ in range(1 if incremental else int(self.epochs)):
            loss = self._epoch(X, y)
            self.n_iter_ += 1
            self.loss_curve_.append(loss)
            message = f"Epoch {self.n_iter_}, loss = {loss:.8f}"
            if early_stopping:
                score = self._score_network(*validation)
                self.validation_scores_.append(score)
                message += f", validation score = {score:.6f}"
                improved = score >= self.best_validation_score_ + self.tol
                if score > self.best_validation_score_:
                    self.best_validation_score_ = score
                    best_weights = self.model_.get_weights()
            else:
                improved = loss <= self.best_loss_ - self.tol
            self.best_loss_ = min(self.best_loss_, loss)
            self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
            if self.verbose:
                print(message, file=sys.stdout, flush=True)
            if not incremental and self._no_improvement_count > self.n_iter_no_change:
                if self.verbose:
                    print(f"No improvement of at least tol={self.tol} for {self.n_iter_no_change} epochs; "
                          "stopping", file=sys.stdout, flush=True)
                break
        if early_stopping and best_weights is not None:
            self.model_.set_weights(best_weights)  # the weights of the best validation score
        # An inference call drops what the layers kept of the last batch for a backward pass (its
        # activations), which a fitted estimator never uses and would otherwise carry into pickles.
        self.model_(X[:1], training=False)
        return self

    def _network_output(self, X):
        check_is_fitted(self, "model_")
        X = self._validate_X(X, reset=False)
        return np.asarray(self.model_.predict(X, batch_size=max(int(self.batch_size), 256), verbose=0),
                          dtype=np.float64)


class RNNClassifier(ClassifierMixin, _RNNEstimator):
    """A recurrent network classifying sequences, as a scikit-learn estimator.

    An optional ``Embedding`` (when ``vocab_size`` is set), stacked recurrent layers of
    ``hidden_sizes`` units (the last one's final output goes on), and a ``Dense`` head:
    one sigmoid unit with binary cross-entropy for two classes, a softmax over the
    classes with cross-entropy for more. Built and trained with :mod:`fastrnn.keras`.

    Parameters
    ----------
    cell : {"lstm", "gru", "rnn"}, default "lstm"
        The recurrent cell (``"rnn"`` is Keras's SimpleRNN, tanh).
    hidden_sizes : int or tuple of int, default (32,)
        Units of each stacked recurrent layer, first to last.
    bidirectional : bool, default False
        Run each recurrent layer both ways and concatenate (twice the units out).
    dropout : float in [0, 1), default 0.0
        Dropout on the inputs of each recurrent layer, in training.
    epochs : int, default 20
        Passes over the training data (at most: training stops early, see ``tol``).
    batch_size : int, default 32
        Samples per optimizer step.
    optimizer : {"adam", "adamw", "rmsprop", "sgd"}, default "adam"
    learning_rate : float, default 0.001
    shuffle : bool, default True
        Shuffle the samples before each epoch (the order comes from ``random_state``).
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the training data (stratified), stop when
        its accuracy has not improved by ``tol`` for ``n_iter_no_change`` epochs, and
        keep the weights of the best epoch. Without it, training stops when the
        training loss has not improved by ``tol`` for ``n_iter_no_change`` epochs.
    validation_fraction : float in (0, 1), default 0.1
    n_iter_no_change : int, default 10
    tol : float, default 1e-4
    vocab_size : int, optional
        When set, ``X`` holds token ids ``(n_samples, T)`` in ``[0, vocab_size)``, embedded first.
    embedding_dim : int, default 32
        Width of the embedding (with ``vocab_size``).
    random_state : int, RandomState instance or None, default None
        The initial weights, dropout masks, sample order and validation split: an int makes
        ``fit`` reproducible bit for bit.
    verbose : int or bool, default 0
        Print the loss (and validation score) after each epoch.
    n_threads : int, optional
        Kernel threads of the recurrent layers (results do not depend on it).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
        ``X.shape[1]`` at fit, as scikit-learn counts features: the number of steps ``T``.
    sequence_shape_ : tuple
        ``X.shape[1:]`` at fit; ``predict`` takes samples of this shape.
    model_ : fastrnn.keras.Sequential
        The trained network.
    n_iter_ : int
        Epochs run (in all, over ``partial_fit`` calls).
    loss_curve_ : list of float
        Mean training loss of each epoch.
    best_loss_ : float
    validation_scores_, best_validation_score_ : list of float, float, or None
        With ``early_stopping``: the validation accuracy of each epoch, and the best.

    Examples
    --------
    >>> import numpy as np
    >>> from fastrnn.sklearn import RNNClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((64, 10, 3))
    >>> y = np.where(X[:, :, 0].sum(axis=1) > 0, "up", "down")
    >>> clf = RNNClassifier(hidden_sizes=16, epochs=5, random_state=0).fit(X, y)
    >>> clf.predict(X[:3]).shape
    (3,)
    """

    _classifier = True
    _multi_output = False

    def _head(self, n_outputs):
        if n_outputs == 2:
            return 1, "sigmoid", "binary_crossentropy"
        return n_outputs, "softmax", "sparse_categorical_crossentropy"

    def _encode(self, y):
        """Class indices of the labels ``y`` (every label must be one of ``classes_``)."""
        indices = np.searchsorted(self.classes_, y)
        indices = np.clip(indices, 0, len(self.classes_) - 1)
        unknown = self.classes_[indices] != y
        if np.any(unknown):
            raise ArgumentError(f"y has labels that are not in classes_ {self.classes_.tolist()}: "
                                f"{np.unique(np.asarray(y)[unknown]).tolist()}")
        if len(self.classes_) == 2:
            return indices.astype(np.float32)[:, np.newaxis]
        return indices.astype(np.int64)

    def _score_targets(self, encoded):
        indices = encoded[:, 0].astype(np.int64) if encoded.ndim == 2 else encoded
        return self.classes_[indices]

    def _score_network(self, X, y):
        """Accuracy on an already validated ``X`` (the early-stopping score)."""
        probabilities = self._probabilities(self.model_.predict(X, batch_size=max(int(self.batch_size), 256),
                                                                verbose=0))
        return float(np.mean(self.classes_[np.argmax(probabilities, axis=1)] == y))

    def _check_y(self, y):
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        return y

    def fit(self, X, y):
        """Train a new network on ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, T, D) or (n_samples, T)
            Sequences, univariate series, or token ids when ``vocab_size`` is set.
        y : array-like of shape (n_samples,)
            Class labels of any type.

        Returns
        -------
        self
        """
        self._check_params()
        X, y = self._validate_X(X, y, reset=True)
        y = self._check_y(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ArgumentError(f"y must hold at least 2 classes to train a classifier; got 1 class: "
                                f"{self.classes_.tolist()}")
        self._initialize(len(self.classes_))
        return self._fit(X, self._encode(y), incremental=False)

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``(X, y)``, starting from the current network (a new one on the first call).

        Parameters
        ----------
        X : array-like of shape (n_samples, T, D) or (n_samples, T)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,)
            Every class of the problem: required on the first call, optional after
            (then it must be the same).

        Returns
        -------
        self
        """
        first = not hasattr(self, "model_")
        if first:
            self._check_params()
            if classes is None:
                raise ArgumentError("classes must be given on the first call to partial_fit (every label the "
                                    "classifier will see); got None")
            classes = np.unique(self._check_y(classes))
            if len(classes) < 2:
                raise ArgumentError(f"classes must hold at least 2 classes; got {classes.tolist()}")
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ArgumentError(f"classes must be the classes of the first call to partial_fit "
                                f"{self.classes_.tolist()}; got {np.unique(classes).tolist()}")
        X, y = self._validate_X(X, y, reset=first)
        y = self._check_y(y)
        if first:
            self.classes_ = classes
            encoded = self._encode(y)  # before any state changes: a label outside classes fails here
            self._initialize(len(classes))
        else:
            encoded = self._encode(y)
        return self._fit(X, encoded, incremental=True)

    def _probabilities(self, output):
        output = np.asarray(output, dtype=np.float64)
        if len(self.classes_) == 2:
            output = np.hstack([1.0 - output, output])
        return output / output.sum(axis=1, keepdims=True)

    def predict_proba(self, X):
        """Probability of each class.

        Parameters
        ----------
        X : array-like of shape (n_samples, T, D) or (n_samples, T)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``; rows sum to 1.
        """
        return self._probabilities(self._network_output(X))

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most probable class of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, T, D) or (n_samples, T)

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        probabilities = self.predict_proba(X)  # first: it raises NotFittedError before fit
        return self.classes_[np.argmax(probabilities, axis=1)]


class RNNRegressor(RegressorMixin, _RNNEstimator):
    """A recurrent network predicting numbers from sequences, as a scikit-learn estimator.

    An optional ``Embedding``, stacked recurrent layers and a linear ``Dense`` head with one
    unit per target, trained on the mean squared error with :mod:`fastrnn.keras`. The
    parameters are :class:`RNNClassifier`'s; with ``early_stopping`` the validation score is R².

    Attributes
    ----------
    n_outputs_ : int
        Number of targets (``y`` of shape (n_samples,) has 1, and ``predict`` returns 1-D).
    n_features_in_, sequence_shape_, model_, n_iter_, loss_curve_, best_loss_, validation_scores_, best_validation_score_
        As for :class:`RNNClassifier`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastrnn.sklearn import RNNRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((64, 10))  # univariate series
    >>> reg = RNNRegressor(cell="gru", hidden_sizes=16, epochs=5, random_state=0).fit(X, X.mean(axis=1))
    >>> reg.predict(X[:3]).shape
    (3,)
    """

    _classifier = False
    _multi_output = True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _head(self, n_outputs):
        return n_outputs, None, "mse"

    def _score_targets(self, encoded):
        return encoded

    def _score_network(self, X, y):
        """R² on an already validated ``X`` (the early-stopping score)."""
        from sklearn.metrics import r2_score

        return float(r2_score(y, self.model_.predict(X, batch_size=max(int(self.batch_size), 256), verbose=0)))

    def _targets(self, y, reset):
        y = np.asarray(y, dtype=np.float32)
        outputs = 1 if y.ndim == 1 else y.shape[1]
        if reset:
            self._y_1d = y.ndim == 1
            self.n_outputs_ = outputs
        elif outputs != self.n_outputs_:
            raise ShapeError(f"y must have {self.n_outputs_} target(s) per sample, as in the first call; "
                             f"got {outputs}")
        return y.reshape(len(y), outputs)

    def fit(self, X, y):
        """Train a new network on ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, T, D) or (n_samples, T)
            Sequences, univariate series, or token ids when ``vocab_size`` is set.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self
        """
        self._check_params()
        X, y = self._validate_X(X, y, reset=True)
        y = self._targets(y, reset=True)
        self._initialize(self.n_outputs_)
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y):
        """One epoch over ``(X, y)``, starting from the current network (a new one on the first call).

        Returns
        -------
        self
        """
        first = not hasattr(self, "model_")
        if first:
            self._check_params()
        X, y = self._validate_X(X, y, reset=first)
        y = self._targets(y, reset=first)
        if first:
            self._initialize(self.n_outputs_)
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """The predicted targets.

        Parameters
        ----------
        X : array-like of shape (n_samples, T, D) or (n_samples, T)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            1-D when ``y`` was 1-D at fit.
        """
        output = self._network_output(X)
        return output[:, 0] if self._y_1d else output
