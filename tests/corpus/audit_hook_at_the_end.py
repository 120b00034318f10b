# A program's own audit hook sees the interpreter's last events (a faster ending must not hide or add one).
import os
import sys


def hook(event, args, write=os.write):
    if event.startswith("cpython.") or event in ("sys.unraisablehook", "ctypes.call_function"):
        write(1, event.encode() + b"\n")


sys.addaudithook(hook)
print("registered")
