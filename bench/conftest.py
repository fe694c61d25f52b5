"""pytest configuration of the benchmark suite: which backends to time, and what to record with the results."""

import importlib.util
import os
import sys

# Let the suite run from a source checkout that is not installed (the compiled
# extension is then whatever was built in place); an installed fastrnn wins.
if importlib.util.find_spec("fastrnn") is None:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pytest_addoption(parser):
    parser.addoption(
        "--fastrnn-backends",
        default=None,
        metavar="NAMES",
        help="comma-separated fastrnn backends to time (default: every compiled backend; "
             "one that does not load here is reported as skipped; add 'python' to time the "
             "reference)",
    )


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record the CPU and the versions of everything timed, so saved runs can be compared."""
    import fastrnn
    from fastrnn.benchmarks.machine import cpu_info, isa_level, sgemm_peak
    from fastrnn.benchmarks.tables import package_version

    cpu = cpu_info()
    machine_info["cpu_model_name"] = cpu.describe()
    machine_info["cpu_isa_flags"] = cpu.relevant_flags()[0]
    machine_info["fastrnn_isa_level"] = isa_level()
    machine_info["fastrnn_available_backends"] = fastrnn.available_backends()
    if not config.getoption("benchmark_disable", False):  # a timed run: what the machine can do now
        machine_info["sgemm_peak_1_thread_gflops"] = round(sgemm_peak(), 1)
    for package in ("fastrnn", "numpy", "scipy", "numba", "torch", "onnxruntime", "openvino", "jax"):
        machine_info[f"{package}_version"] = package_version(package)
