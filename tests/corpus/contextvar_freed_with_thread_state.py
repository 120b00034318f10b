# A context variable's value lives in the thread state, cleared after the modules.
import contextvars
import os


class Noisy:
    def __del__(self, write=os.write):
        write(1, b"context value freed\n")


contextvars.ContextVar("value").set(Noisy())
print("set")
