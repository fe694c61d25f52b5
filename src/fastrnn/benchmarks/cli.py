"""The command line of the benchmarks: the options of ``python -m fastrnn bench`` and the report it prints.

The report is a header naming the machine (CPU model, ISA flags, the level
fastrnn's kernels run at, the sgemm peak measured now; :mod:`~fastrnn.benchmarks.machine`)
and the versions, then the tables asked for: the cells' passes
(:mod:`~fastrnn.benchmarks.passes`), the streaming step
(:mod:`~fastrnn.benchmarks.streaming`), the training step
(:mod:`~fastrnn.benchmarks.training`) and in bf16
(:mod:`~fastrnn.benchmarks.bf16_training`), the ``fit`` epoch
(:mod:`~fastrnn.benchmarks.fit`), the ``fit`` epoch of a functional encoder-decoder
(:mod:`~fastrnn.benchmarks.seq2seq`), the reduced precisions' speed
(:mod:`~fastrnn.benchmarks.precision`) and accuracy
(:mod:`~fastrnn.benchmarks.accuracy`), then optionally peak memory and the cost of a
new process (:mod:`~fastrnn.benchmarks.startup`). With ``--busy`` it prints instead the default
thread count against one thread, with and without a competing process
(:mod:`~fastrnn.benchmarks.busy`).
"""

import argparse
import sys

import fastrnn
from fastrnn.benchmarks.accuracy import run_accuracy
from fastrnn.benchmarks.backends import check_backend, compiled_backends
from fastrnn.benchmarks.bf16_training import run_bf16_training
from fastrnn.benchmarks.busy import run_busy
from fastrnn.benchmarks.estimators import run_sklearn
from fastrnn.benchmarks.fit import run_fit
from fastrnn.benchmarks.grid import CELLS, PASSES, SHAPES
from fastrnn.benchmarks.machine import header_lines, sgemm_peak
from fastrnn.benchmarks.passes import run_cells
from fastrnn.benchmarks.peers import available_peers
from fastrnn.benchmarks.precision import run_precision
from fastrnn.benchmarks.quantized_peers import available_precision_peers
from fastrnn.benchmarks.seq2seq import run_seq2seq
from fastrnn.benchmarks.startup import peak_memory, startup_times
from fastrnn.benchmarks.streaming import available_step_peers, run_streaming
from fastrnn.benchmarks.tables import package_version
from fastrnn.benchmarks.targets import FIRST_CALL_TARGET_S, IMPORT_TARGET_S, PRECISION_SHAPES
from fastrnn.benchmarks.classifier import run_classifier
from fastrnn.benchmarks.on_dask import run_dask
from fastrnn.benchmarks.training import run_training
from fastrnn.exceptions import BackendUnavailableError

__all__ = ["DESCRIPTION", "TABLES", "add_arguments", "run", "main"]

#: One line on what ``python -m fastrnn bench`` does.
DESCRIPTION = ("Speed of fastrnn against PyTorch, ONNX Runtime, OpenVINO, JAX and Keras. Prints a "
               "table of medians and ratios.")

#: The tables ``--tables`` can ask for, in the order they print.
TABLES = ("cells", "streaming", "training", "bf16-training", "classifier", "fit", "seq2seq", "precision",
          "accuracy", "sklearn", "dask")
#: What runs without ``--tables``: every table but 'dask', which starts LocalClusters (the dask extra).
DEFAULT_TABLES = TABLES[:-1]


def _parse_list(text, kind=str):
    """Items of a comma-separated option, stripped, empty ones dropped."""
    return [kind(item.strip()) for item in text.split(",") if item.strip()]


def add_arguments(parser):
    """Add the options of ``python -m fastrnn bench`` to an :class:`argparse.ArgumentParser`."""
    grid = "; ".join(f"{s.name}=(T={s.T}, B={s.B}, D={s.D}, H={s.H}) {s.note}" for s in SHAPES.values())
    parser.add_argument("--cells", type=lambda t: _parse_list(t.lower()), default=list(CELLS),
                        metavar="rnn,lstm", help=f"comma-separated cells to run (default: all: "
                                                 f"{','.join(CELLS)})")
    parser.add_argument("--shapes", type=lambda t: _parse_list(t.upper()), default=None,
                        metavar="S1,S3", help=f"comma-separated shapes to run (default: all; for the "
                                              f"'precision' and 'bf16-training' tables "
                                              f"{','.join(PRECISION_SHAPES)}). {grid}")
    parser.add_argument("--threads", type=lambda t: _parse_list(t, int), default=[1, 2],
                        metavar="1,2", help="comma-separated thread counts (default: 1,2)")
    parser.add_argument("--backends", type=_parse_list, default=None, metavar="numba,cython",
                        help="comma-separated fastrnn backends (default: every available compiled "
                             "backend; 'python' only when named)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--repeat", type=int, default=None, metavar="N",
                        help="timed rounds per row (default: chosen from --time-per-shape)")
    budget.add_argument("--time-per-shape", type=float, default=1.5, metavar="SECONDS",
                        help="seconds of timed rounds for each cell, shape, thread count and pass; the "
                             "number of rounds follows (at least 5) (default: 1.5)")
    parser.add_argument("--no-torch", action="store_true",
                        help="do not compare with torch.nn.RNN / LSTM / GRU")
    parser.add_argument("--no-onnx", action="store_true",
                        help="do not compare with ONNX Runtime's RNN / LSTM / GRU operators")
    parser.add_argument("--no-openvino", action="store_true",
                        help="do not compare with OpenVINO (f32 and its default precision)")
    parser.add_argument("--no-jax", action="store_true",
                        help="do not compare with JAX (lax.scan under jit); JAX's thread count is "
                             "fixed for the process to the first of --threads")
    parser.add_argument("--passes", type=_parse_list, default=list(PASSES), metavar="fwd,fwdbwd",
                        help="passes of the 'cells' table (default: fwd,fwdbwd)")
    parser.add_argument("--no-startup", action="store_true",
                        help="skip the new-process measurements (import time, first call)")
    parser.add_argument("--tables", type=_parse_list, default=list(DEFAULT_TABLES),
                        metavar="cells,streaming,training,bf16-training,classifier,fit,seq2seq,precision,accuracy,"
                                "dask",
                        help="which tables to print: 'cells' (each cell's forward and forward+"
                             "backward), 'streaming' (one step at batch 1, H=64/256/1024, against "
                             "torch's cell modules and ONNX Runtime on T=1), 'training' (a whole "
                             "training step of 2-layer "
                             "bidirectional LSTM and GRU, with Adam, and what variable lengths "
                             "cost), 'bf16-training' (a training step of a 1-layer LSTM and GRU "
                             "in fastrnn float32 and bf16, torch float32 and torch autocast bf16), "
                             "'classifier' (one training step of fastrnn.nn's Embedding-LSTM-"
                             "Linear classifier against the same model in PyTorch), "
                             "'fit' (one fastrnn.keras fit epoch of the seeds' "
                             "Embedding-SimpleRNN-Dense model against Keras and PyTorch), 'seq2seq' "
                             "(one fit epoch of the translate demo's functional encoder-decoder with "
                             "attention against Keras), "
                             "'precision' (the forward in float32, bf16 and int8 against ONNX "
                             "Runtime's int8 LSTM and OpenVINO at its default precision) and "
                             "'accuracy' (the error of bf16 and int8 against the float64 forward "
                             "over T and H; no timing) and 'dask' (fastrnn.dask.predict and fit on 1 and "
                             "2 workers of a LocalCluster; needs the dask extra) and 'sklearn' "
                             "(fastrnn.sklearn.RNNClassifier.fit against the same network fitted in "
                             "fastrnn.keras; needs the sklearn extra) (default: all but 'dask')")
    parser.add_argument("--dask-sequences", type=int, default=100_000, metavar="N",
                        help="sequences of the 'dask' predict table (default: 100000)")
    parser.add_argument("--dask-global-batch", type=int, default=256, metavar="B",
                        help="global batch of the 'dask' training table (default: 256)")
    parser.add_argument("--dask-steps", type=int, default=10, metavar="N",
                        help="timed steps of the 'dask' training table (default: 10)")
    parser.add_argument("--sklearn-samples", type=int, default=1024, metavar="N",
                        help="training samples of the 'sklearn' table (default: 1024)")
    parser.add_argument("--no-keras", action="store_true",
                        help="do not compare with Keras on TensorFlow in the 'fit' and 'seq2seq' tables")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--busy", action="store_true",
                        help="instead of the tables, time the default thread count (n_threads=None) "
                             "against n_threads=1 and 2 for every backend, cell, shape and pass, "
                             "first while one competing CPU-bound process runs, then idle; "
                             "--threads and the peers are not used")
    parser.add_argument("--memory", action="store_true",
                        help="also measure the peak memory of an LSTM forward+backward on S2 in new "
                             "processes, fastrnn against torch")
    return parser


def run(args, out=None):
    """Run the benchmarks described by parsed ``args`` and print the report.

    Parameters
    ----------
    args : argparse.Namespace
        From a parser given :func:`add_arguments`.
    out : file-like, optional
        Where to print; standard output by default.

    Returns
    -------
    int
        Exit status: 0, or 2 for an unknown cell or shape, or an unavailable backend.
    """
    out = out or sys.stdout
    # the precision and bf16 training tables have shapes of their own unless some are named
    args.precision_shapes = args.shapes
    args.dask_shapes = args.shapes or ["S2"]  # the dask tables: S2 unless shapes are named
    if args.shapes is None:
        args.shapes = list(SHAPES)
    for what, names, known in (("cell", args.cells, CELLS), ("shape", args.shapes, SHAPES),
                               ("table", args.tables, TABLES), ("pass", args.passes, PASSES)):
        unknown = [name for name in names if name not in known]
        if unknown:
            print(f"error: unknown {what}(s) {', '.join(unknown)}; known: {', '.join(known)}",
                  file=sys.stderr)
            return 2
    backends = args.backends if args.backends is not None else compiled_backends()
    try:
        for name in backends:
            check_backend(name)
    except (BackendUnavailableError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not backends:
        print("error: no compiled backend is available; try --backends python", file=sys.stderr)
        return 2
    if any(n < 1 for n in args.threads):
        print("error: --threads must be positive integers", file=sys.stderr)
        return 2

    print(f"# fastrnn {fastrnn.__version__} benchmark, float32, times are medians in ms", file=out)
    peak = sgemm_peak()
    for line in header_lines(args.threads, peak):
        print(f"# {line}", file=out)
    print("# " + ", ".join(f"{pkg} {package_version(pkg)}"
                           for pkg in ("numpy", "scipy", "numba", "torch", "onnxruntime", "openvino",
                                       "jax")), file=out)
    print(f"# backends: {', '.join(backends)} (available: {', '.join(fastrnn.available_backends())}); "
          f"thread count: fastrnn n_threads, torch.set_num_threads, ORT intra_op_num_threads (idle spinning off), "
          f"OpenVINO INFERENCE_NUM_THREADS", file=out)
    peers = available_peers(with_torch=not args.no_torch, with_onnx=not args.no_onnx,
                            with_openvino=not args.no_openvino, with_jax=not args.no_jax,
                            jax_threads=args.threads[0], out=out)
    print("# ratios = median over paired rounds of peer time / best fastrnn backend time "
          "(> 1: fastrnn faster); n = rounds", file=out)
    out.flush()

    if args.busy:
        run_busy(args, backends, out)
        return 0
    if "cells" in args.tables:
        run_cells(args, backends, peers, out, peak=peak)
    if "streaming" in args.tables:
        run_streaming(args, available_step_peers(with_torch=not args.no_torch,
                                                 with_onnx=not args.no_onnx, out=out), out)
    if "training" in args.tables:
        run_training(args, out, with_torch="torch" in peers)
    if "bf16-training" in args.tables:
        run_bf16_training(args, backends[0], out, with_torch="torch" in peers)
    if "classifier" in args.tables:
        run_classifier(args, out, with_torch="torch" in peers)
    if "fit" in args.tables or "seq2seq" in args.tables:
        with_keras = False
        if not args.no_keras:
            try:
                import tensorflow  # noqa: F401

                with_keras = True
            except ImportError as error:
                print(f"# tensorflow not available, Keras skipped ({error})", file=out)
    if "fit" in args.tables:
        fit_peers = [peer for peer in peers if peer == "torch"] + (["keras"] if with_keras else [])
        run_fit(args, out, fit_peers)
    if "seq2seq" in args.tables:
        run_seq2seq(args, out, with_keras)
    if "precision" in args.tables:
        run_precision(args, backends[0], available_precision_peers(
            with_onnx=not args.no_onnx, with_openvino=not args.no_openvino, out=out), out)
    if "accuracy" in args.tables:
        run_accuracy(args, out)
    if "sklearn" in args.tables:
        run_sklearn(args, out)
    if "dask" in args.tables:
        run_dask(args, out)

    if args.memory:
        implementations = backends + (["torch"] if "torch" in peers else [])
        memory = peak_memory(implementations)
        print("\n# peak RSS of one LSTM forward+backward on S2, float32, 1 thread, each in a new "
              "process (MiB): whole process / added by the pass", file=out)
        for who, (total, added) in memory.items():
            print(f"{who}: {total:.0f} / {added:.0f}", file=out)

    if not args.no_startup:
        startup = startup_times()
        (cold, backend), (warm, _) = startup["first_call"]
        print(f"\n# new process (wall time; bare `python -c pass`: {startup['python']:.3f} s)", file=out)
        verdict = "ok" if startup["import"] < IMPORT_TARGET_S else "MISS"
        print(f"python -c 'import fastrnn': {startup['import']:.3f} s "
              f"(target < {IMPORT_TARGET_S} s: {verdict})", file=out)
        verdict = "ok" if warm < FIRST_CALL_TARGET_S else "MISS"
        print(f"import + one forward+backward on S1 ({backend}): "
              f"first run {cold:.3f} s, second run (warm caches) {warm:.3f} s "
              f"(target < {FIRST_CALL_TARGET_S} s: {verdict})", file=out)
    return 0


def main(argv=None):
    """Entry point of ``python -m fastrnn.benchmarks``; ``python -m fastrnn bench`` is the same.

    Parameters
    ----------
    argv : list of str, optional
        Arguments; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        Exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m fastrnn bench",
        description=DESCRIPTION,
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
