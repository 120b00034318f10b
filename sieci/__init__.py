"""sieci: run Python files on a pool of machines and get their output back."""

__version__ = "0.1.0"
