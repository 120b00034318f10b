with open("random.py", "w") as f:
    f.write("OWN = True\n")
import random
print(getattr(random, "OWN", False))
