# stderr's flush at exit fails quietly, and python3 still exits 120.
import os
import sys

sys.stderr.write("never read, no newline")
read_end, write_end = os.pipe()
os.close(read_end)
os.dup2(write_end, 2)
