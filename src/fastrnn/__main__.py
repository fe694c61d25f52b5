"""The command line: ``python -m fastrnn <command>`` (also installed as ``fastrnn``).

Commands
--------
bench
    Time fastrnn's RNN, LSTM and GRU, a training step and a Keras-style fit
    epoch against PyTorch, ONNX Runtime and Keras (see :mod:`fastrnn.benchmarks`).
demo
    Train models on data that ships with Python (see :mod:`fastrnn.demo`).
info
    Print the configuration: backends and why one is missing, OpenMP, threads, BLAS.

Each command imports what it needs only when it runs, so ``--help`` and
``info`` stay fast.
"""

import argparse
import sys


def _info(args):
    import fastrnn

    fastrnn.show_config()
    return 0


def _bench(args):
    from fastrnn.benchmarks import cli as bench_cli

    return bench_cli.run(args)


def _demo(args):
    from fastrnn.demo import cli as demo_cli

    return demo_cli.run(args)


def build_parser():
    """The argument parser of ``python -m fastrnn``, one sub-command per command.

    Returns
    -------
    argparse.ArgumentParser
    """
    from fastrnn.benchmarks import cli as bench_cli

    parser = argparse.ArgumentParser(
        prog="python -m fastrnn",
        description="fastrnn: fast recurrent neural networks on the CPU for NumPy users.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    bench = commands.add_parser(
        "bench",
        help="time fastrnn against PyTorch and ONNX Runtime",
        description="Time forward and forward+backward of every fastrnn backend, for the "
                    "RNN, LSTM and GRU cells, against torch.nn.RNN / LSTM / GRU (and ONNX "
                    "Runtime's operator of the same name, forward) with the same "
                    "weights and thread count, float32, on the shape grid of bench/README.md. "
                    "Implementations are warmed up, then alternated round after round; the "
                    "table gives medians and the median per-round ratio peer/fastrnn.",
    )
    bench_cli.add_arguments(bench)
    bench.set_defaults(func=_bench)

    info = commands.add_parser(
        "info",
        help="print backends, OpenMP, threads and BLAS",
        description="Print every backend (available or not, and why), OpenMP, threads and BLAS.",
    )
    info.set_defaults(func=_info)

    from fastrnn.demo import cli as demo_cli

    demo = commands.add_parser(
        "demo",
        help="train RNNs on data shipped with Python (word order, code tagging, char LM, memory)",
        description=demo_cli.DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo_cli.add_arguments(demo)
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None):
    """Run the command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        Exit status.
    """
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
