import signal
for number in sorted(signal.valid_signals()):
    try:
        print(number, signal.getsignal(number))
    except (OSError, ValueError):
        pass
