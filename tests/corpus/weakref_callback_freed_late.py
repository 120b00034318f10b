# A weak reference's callback runs when its object goes, here with the interpreter's codec state.
import codecs
import os
import weakref


class Search:
    def __call__(self, name):
        return None


search = Search()
keep = weakref.ref(search, lambda ref, write=os.write: write(1, b"callback\n"))
codecs.register(search)
del search
print("registered")
