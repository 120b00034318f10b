# sys.exit with a small int: the status, and the buffered output, as python3 has them.
import sys

print("leaving with 3", end="")
sys.exit(3)
