import threading, time
started = threading.Event()
def forever():
    started.set()
    while True:
        time.sleep(0.01)
threading.Thread(target=forever, daemon=True).start()
started.wait()
print("main returns with a daemon thread running")
