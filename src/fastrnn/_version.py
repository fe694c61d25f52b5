"""The version of fastrnn, in a module of its own so that any layer can read it.

``fastrnn.__version__`` re-exports it; keep it equal to ``version`` in ``pyproject.toml``.
"""

__version__ = "0.1.0"
