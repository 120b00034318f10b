# A non-daemon thread still running when the main file ends is joined first; then atexit handlers print.
import atexit
import threading

go = threading.Event()


def late():
    go.wait()
    print("thread done")


atexit.register(print, "atexit after the thread")
threading.Thread(target=late).start()
print("main done")
go.set()
