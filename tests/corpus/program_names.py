"""How a program is named: python3 FILE and python3 - (the code on stdin) name it apart."""
import os, sys, traceback
print(sys.argv, sys.orig_argv[1:], os.path.basename(__file__), __spec__, type(__loader__).__name__)
print(sys.path[0] == "", sys.path[0] == os.getcwd(), sorted(os.listdir(".")), repr(sys.stdin.read()))
print(list(globals()), getattr(sys.modules["__main__"], "__cached__", "no __cached__"))
try:
    1 / 0
except ZeroDivisionError:
    print(traceback.format_exc().splitlines()[1:3])
raise KeyError("the last line")
