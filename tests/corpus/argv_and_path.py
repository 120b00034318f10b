import os, sys
print(sys.argv, sys.path[0] == os.path.dirname(os.path.abspath(__file__)), os.getcwd() == sys.path[0])
print(sys.orig_argv[1:], sys.flags)
