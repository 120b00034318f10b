# A handler os.register_at_fork keeps is freed with the interpreter's state, after the audit hooks.
import os


class Handler:
    def __call__(self):
        pass

    def __del__(self, write=os.write):
        write(1, b"fork handler freed\n")


os.register_at_fork(after_in_child=Handler())
print("registered")
