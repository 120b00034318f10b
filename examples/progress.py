"""Output arrives while the job runs: each line shows up as it is printed."""

import time

for step in range(1, 6):
    print(f"step {step} of 5", flush=True)
    time.sleep(0.5)
