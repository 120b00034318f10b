class Noisy:
    def __del__(self):
        print("deleted at exit")
keep = Noisy()
print("start")
