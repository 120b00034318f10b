import atexit, sys
def report():
    print("last:", getattr(sys, "last_type", None), getattr(sys, "last_value", None), file=sys.stderr)
atexit.register(report)
raise ValueError("boom")
