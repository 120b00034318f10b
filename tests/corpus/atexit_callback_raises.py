import atexit
def broken():
    raise RuntimeError("in atexit")
atexit.register(broken)
print("main done")
