# Objects in a cycle, each with a finalizer that prints, collected when the interpreter ends.
class Node:
    def __init__(self, name):
        self.name = name
        self.other = None

    def __del__(self):
        print("finalized", self.name)


first, second = Node("first"), Node("second")
first.other, second.other = second, first
del first, second
import gc

gc.disable()
print("cycle left to the end")
