# gc.callbacks run at every collection, the interpreter's last one included (after its audit hooks).
import gc
import os


def count(phase, info, write=os.write):
    if phase == "stop":
        write(1, b"collected\n")


gc.callbacks.append(count)
print("registered")
