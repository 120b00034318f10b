import threading
main_done = threading.Event()
def late():
    main_done.wait()
    for n in range(3):
        print("thread", n, flush=True)
threading.Thread(target=late).start()
print("main returns")
main_done.set()
