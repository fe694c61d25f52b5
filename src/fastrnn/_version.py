"""The version of fastrnn, in a module of its own so that any layer can read it.

``fastrnn.__version__`` re-exports it, and ``pyproject.toml`` takes the package's version from it.
"""

__version__ = "0.1.0"
