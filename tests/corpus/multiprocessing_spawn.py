import multiprocessing as mp
def square(n):
    return n * n
if __name__ == "__main__":
    with mp.get_context("spawn").Pool(2) as pool:
        print(pool.map(square, range(5)))
