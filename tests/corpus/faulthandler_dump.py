import faulthandler, sys
def where():
    faulthandler.dump_traceback(sys.stdout, all_threads=False)
where()
