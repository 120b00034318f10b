print("zażółć gęślą jaźń \N{SNAKE}")
