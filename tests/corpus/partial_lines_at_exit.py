# Output still in the buffers when a program ends plainly: python3 flushes both at its end.
import sys

sys.stdout.write("stdout, no newline")
sys.stderr.write("stderr, no newline")
