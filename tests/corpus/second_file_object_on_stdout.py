out = open(1, "w", closefd=False)
out.write("written through a second file object, never flushed\n")
print("first")
