with open("json.py", "w") as f:
    f.write("OWN = 'the script own json.py'\n")
import json
print(getattr(json, "OWN", "the standard library's json"))
