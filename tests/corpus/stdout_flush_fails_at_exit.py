# Output still buffered when stdout's reader has gone: the flush at exit fails, python3 says so and exits 120.
import os
import sys

sys.stdout.write("never read")
read_end, write_end = os.pipe()
os.close(read_end)
os.dup2(write_end, 1)
