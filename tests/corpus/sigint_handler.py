import os, signal
signal.signal(signal.SIGINT, lambda *_: print("handled SIGINT"))
os.kill(os.getpid(), signal.SIGINT)
print("after")
