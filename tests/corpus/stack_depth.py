import sys
frame, depth = sys._getframe(), 0
while frame:
    depth, frame = depth + 1, frame.f_back
print(depth)
