import gc
print(gc.isenabled(), gc.get_freeze_count(), gc.get_threshold(), len(gc.garbage))
