import sys
sys.stdout.close()
print("to stderr", file=sys.stderr)
