"""The docstring."""
import sys, os
m = sys.modules["__main__"]
print(__name__, os.path.basename(__file__), type(__loader__).__name__, __spec__, __package__, __doc__)
print(sorted(k for k in vars(m) if k.startswith("__")))
print(__builtins__ is __import__("builtins"), getattr(m, "__cached__", "no __cached__"))
