"""GNU parallel's options that sieci-client does not take, each refused by name with the reason
(docs/batches.md); read only when the command line has an option the client does not know. Those
it takes (-j, -k, --tag, --halt, --dry-run) are declared in arguments.py."""

# GNU parallel's options sieci does not take, and why (the others it does not know get argparse's word).
NOT_TAKEN = {flag: why for flags, why in (
    (("--pipe", "--pipepart", "--block", "--block-size", "--recstart", "--recend", "--cat", "--fifo"),
     "jobs read no input split from stdin"),
    (("-X", "-m", "--xargs", "-N", "--max-args", "-n", "--max-replace-args", "-L", "--max-lines", "-l", "-s",
      "--max-chars"), "each job gets one value from each input source"),
    (("--colsep", "-C", "--csv", "--header", "-0", "--null", "-d", "--delimiter", "-E", "--trim", "--group-by",
      "--shuf", "--link", "--xapply"), "input sources are read one value a line, or given after ':::'; "
     "link them with ':::+' or '::::+'"),
    (("-I", "--replace", "--extensionreplace", "--basenamereplace", "--dirnamereplace",
      "--basenameextensionreplace", "--seqreplace", "--slotreplace", "--rpl", "--plus", "-i", "-U", "-J"),
     "the replacement strings are GNU parallel's defaults"),
    (("--tagstring", "--ctag", "--ctagstring", "--line-buffer", "--lb", "--linebuffer", "--files", "--compress",
      "-u", "--group", "-g", "--latest-line", "--ll", "--verbose", "-v", "--eta",
      "--progress", "--bar"), "a batch shows each job's output whole, in order (see --ungroup, --tag)"),
    (("-S", "--sshlogin", "--sshloginfile", "--slf", "--transfer", "--transferfile", "--tf", "--cleanup",
      "--trc", "--basefile", "--bf", "--workdir", "--wd", "--onall", "--nonall"),
     "jobs run on the cluster's workers (see --with, --return, -e)"),
    (("--delay", "--load", "--memfree", "--nice", "--semaphore", "--sem", "--fg", "--bg", "--timeout-factor",
      "--shebang", "--shebang-wrap", "--quote", "-q", "--no-run-if-empty", "-r", "--interactive", "-p",
      "--sqlmaster", "--sqlworker", "--sqlandworker"), "sieci does not run it"),
    (("--halt-on-error",), "give it as --halt"),
    (("-P", "--max-procs"), "give it as -j or --jobs"),
) for flag in flags}
