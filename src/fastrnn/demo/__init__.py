"""The showcase of ``python -m fastrnn demo``: fastrnn.keras models trained on data shipped with Python.

- :mod:`fastrnn.demo.data` builds the data sets (NumPy arrays), :mod:`fastrnn.demo.dates` the
  translate task's;
- :mod:`fastrnn.demo.tasks` builds, trains and reports one model per task;
- :mod:`fastrnn.demo.plotting` draws the training curves (matplotlib, optional);
- :mod:`fastrnn.demo.cli` is the command's arguments and entry point.

Nothing here is imported by the rest of the package, except by the ``seq2seq`` benchmark
(:mod:`fastrnn.benchmarks.seq2seq`, when it runs), which times the translate task's model.
"""
