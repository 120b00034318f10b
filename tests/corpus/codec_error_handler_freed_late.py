# A codec error handler lives in the interpreter's own state, freed after the audit hooks: its
# finalizer still writes under python3, so a job must not end before it.
import codecs
import os


class Handler:
    def __call__(self, error):
        return "?", error.end

    def __del__(self, write=os.write):
        write(1, b"error handler freed\n")


codecs.register_error("sieci.question_mark", Handler())
print("caf\xe9".encode("ascii", "sieci.question_mark"))
