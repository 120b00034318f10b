print("\udcff")
print("after")
