import threading
t = threading.Thread(target=lambda: exec("raise SystemExit(5)"))
t.start(); t.join()
print("main still here")
