# sys.exit in an atexit handler: python3 reports nothing for SystemExit there, and keeps its status.
import atexit
import sys

atexit.register(sys.exit, 7)
print("registered")
