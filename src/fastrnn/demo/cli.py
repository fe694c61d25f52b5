"""The ``demo`` command of ``python -m fastrnn``: its arguments and what running it does."""

import argparse
import sys
import time

__all__ = ["DESCRIPTION", "add_arguments", "run"]

DESCRIPTION = """\
Train fastrnn.keras models on data that ships with Python itself (nothing to
download), with a progress bar per epoch, and report the final metrics and the
time taken.

tasks:
  order    (default, about a minute) Embedding -> SimpleRNN -> Dense(sigmoid)
           tells real English sentences, taken from the documentation text
           CPython ships in pydoc_data.topics, from the same words shuffled.
           Only a model that reads word order can do it: a bag-of-words
           logistic regression, shown next to it, stays at chance (50 %).
  tagging  Tags every character of standard-library Python source with its
           token class as the tokenize module sees it (name, keyword, string,
           comment, number, operator, other) with Embedding(mask_zero=True) ->
           Bidirectional(GRU or LSTM) -> TimeDistributed(Dense(softmax));
           reports the accuracy per class on held-out files.
  charlm   A character-level language model of the same documentation text:
           two stacked LSTM (or GRU) layers, TimeDistributed softmax; reports
           the validation perplexity and prints text sampled from the model at
           temperatures 0.5 and 1.0.
  memory   The adding problem (sum the two marked values of a long sequence)
           at growing lengths: SimpleRNN forgets early inputs, GRU and LSTM
           learn to keep them (LSTM needs more epochs as sequences grow).
           Prints the test MSE of each cell and length next to the MSE of
           always answering 1.0.

--precision bf16|int8 also computes the test metric (accuracy, perplexity, MSE)
with the trained model's recurrent layers run in that precision
(fastrnn.quantize), next to its float32 value.

--train-precision bf16 also trains a second model with its recurrent layers in
bf16 (mixed precision: bf16 products, float32 master weights and optimizer
state) from the same initial weights, data and shuffling, and prints its
training loss per epoch and its test metric next to the float32 model's.

--epochs, --units, --batch-size and --samples override the task's sizes;
--quick makes every size tiny (seconds, for tests). Results are deterministic
for a given --seed, backend and thread count.
"""


def _integer(text, low, what):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low:
        raise argparse.ArgumentTypeError(f"must be a {what} integer; got {text!r}")
    return value


def _positive_int(text):
    return _integer(text, 1, "positive")


def _seed(text):
    return _integer(text, 0, "non-negative")


def _lengths(text):
    try:
        values = tuple(int(piece) for piece in text.split(",") if piece.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 10,50,150; got {text!r}")
    if not values or min(values) < 2:
        raise argparse.ArgumentTypeError(f"lengths must be integers of at least 2; got {text!r}")
    return values


def add_arguments(parser):
    """Add the ``demo`` command's options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        Its ``description`` should be :data:`DESCRIPTION` (with
        ``formatter_class=argparse.RawDescriptionHelpFormatter``).
    """
    from fastrnn.demo.tasks import TASKS

    parser.add_argument("--task", choices=list(TASKS), default="order",
                        help="what to train (default: order); see above")
    parser.add_argument("--epochs", type=_positive_int, metavar="N",
                        help="passes over the training data (default: order 15, tagging 8, charlm 5, memory 20)")
    parser.add_argument("--units", type=_positive_int, metavar="N",
                        help="units of each recurrent layer (default: 32; 96 for charlm)")
    parser.add_argument("--batch-size", type=_positive_int, default=None, metavar="N",
                        help="samples per batch (default: 32)")
    parser.add_argument("--samples", type=_positive_int, metavar="N",
                        help="size of the training data: sentences (order, default all ~2,000), windows "
                             "(tagging 3000, charlm 4000) or sequences per length (memory 3000)")
    parser.add_argument("--cell", choices=["lstm", "gru"], type=str.lower,
                        help="recurrent cell of tagging (default gru) and charlm (default lstm)")
    parser.add_argument("--lengths", type=_lengths, metavar="L1,L2,...",
                        help="sequence lengths of the memory task (default: 10,50,100)")
    parser.add_argument("--backend", choices=["auto", "cython", "numba", "python"], default="auto",
                        help="fastrnn backend of the recurrent layers (default: auto, the fastest available)")
    parser.add_argument("--threads", type=_positive_int, metavar="N",
                        help="threads of the recurrent layers (default: chosen from the problem size)")
    parser.add_argument("--seed", type=_seed, default=0, help="seed of data, weights and shuffling (default: 0)")
    parser.add_argument("--precision", choices=["float32", "bf16", "int8"], default="float32",
                        help="after training in float32, also evaluate the test metric with the recurrent "
                             "layers' inference in this precision (default: float32 only)")
    parser.add_argument("--train-precision", choices=["float32", "bf16"], default="float32",
                        help="also train a copy of the model with its recurrent layers in this "
                             "precision and compare its loss per epoch and test metric with float32 "
                             "training (default: float32 only)")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="write the training curves to this image (needs matplotlib)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a run of seconds, for tests")
    parser.add_argument("--no-progress", action="store_true",
                        help="one line per epoch instead of progress bars")


def _precision_problem(precision):
    """Why this fastrnn cannot evaluate in ``precision`` (a str), or None when it can."""
    import fastrnn

    if not hasattr(fastrnn, "quantize"):
        return "this fastrnn has no fastrnn.quantize (reduced-precision inference)"
    return None


def _train_precision_problem(precision):
    """Why this fastrnn cannot train in ``precision`` (a str), or None when it can.

    One ``fit`` step of a tiny model tells: that is the path the tasks take.
    """
    import numpy as np

    from fastrnn import keras
    from fastrnn.exceptions import FastRNNError
    from fastrnn.keras import layers

    model = keras.Sequential([layers.GRU(2, seed=0, precision=precision), layers.Dense(1, seed=0)])
    model.compile(loss="mse", optimizer="sgd")
    try:
        model.fit(np.zeros((2, 3, 1), np.float32), np.zeros((2, 1), np.float32), epochs=1, verbose=0)
    except FastRNNError as error:
        return f"{type(error).__name__}: {error}"
    return None


def run(args):
    """Run the task that ``args`` names and report it.

    Parameters
    ----------
    args : argparse.Namespace
        From a parser given :func:`add_arguments`.

    Returns
    -------
    int
        Exit status: 0, or 2 when ``--plot`` is asked for without matplotlib or
        ``--precision`` (``--train-precision``) for a reduced precision this fastrnn cannot
        run (train in).
    """
    from fastrnn.demo import plotting, tasks

    if args.plot:
        try:  # before training: a missing extra should not cost minutes of work
            plotting.require_matplotlib()
        except plotting.PlotUnavailableError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    if args.precision != "float32":
        problem = _precision_problem(args.precision)
        if problem:  # before training, like --plot
            print(f"error: --precision {args.precision}: {problem}", file=sys.stderr)
            return 2
    if args.train_precision != "float32":
        problem = _train_precision_problem(args.train_precision)
        if problem:
            print(f"error: --train-precision {args.train_precision}: {problem}", file=sys.stderr)
            return 2
    settings = tasks.Settings(
        epochs=args.epochs, units=args.units, batch_size=args.batch_size, samples=args.samples,
        cell=args.cell, lengths=args.lengths, backend=None if args.backend == "auto" else args.backend,
        threads=args.threads, seed=args.seed, precision=args.precision,
        train_precision=args.train_precision, quick=args.quick,
        verbose=2 if args.no_progress else 1,
    )
    from fastrnn import __version__, _backends

    # first, so that a user sees at once whether the compiled build is the one running
    backend_name, _ = _backends.resolve(settings.backend)
    print(f"fastrnn {__version__} demo {args.task}: running on the {_backends.describe(backend_name)}")
    started = time.perf_counter()
    result = tasks.TASKS[args.task](settings)
    if args.plot:
        path = plotting.plot_curves(result.curves, args.plot, f"fastrnn demo --task {args.task}",
                                    log_y=result.log_y)
        print(f"training curves written to {path}")
    print(f"demo {args.task}: done in {time.perf_counter() - started:.1f} s")
    sys.stdout.flush()
    return 0
