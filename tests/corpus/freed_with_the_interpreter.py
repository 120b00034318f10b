# An object the interpreter frees only when it clears its own state (a codec search function), whose
# finalizer still writes: python3 shows it, so a job must end no earlier.
import codecs
import os


class Search:
    def __call__(self, name):
        return None

    def __del__(self, write=os.write):
        write(1, b"search function freed\n")


codecs.register(Search())
print("registered")
