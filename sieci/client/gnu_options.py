"""The client's options that come from GNU parallel (-j, -k, --tag, --halt, --dry-run), and those of GNU
parallel's that sieci does not take, each refused by name (docs/batches.md)."""

from sieci import defaults
from sieci.client.halt import parse_halt
from sieci.options import Option, positive_count

GNU_OPTIONS = [
    Option("-j", positive_count, defaults.JOBS_AT_ONCE, "batches: the same as --jobs", "N", env=False,
           dest="jobs"),
    Option("--keep-order", bool, False,
           "batches: show the jobs' output in the order of their values, as a batch does unless --ungroup "
           "(GNU parallel's -k)", env=False, short="-k"),
    Option("--tag", bool, False, "batches: put each job's values, a space apart, and a tab before each line of "
           "its output"),
    Option("--halt", parse_halt, None,
           "batches: stop starting jobs (soon) or stop at once (now) once N jobs, or N% of them, failed, "
           "succeeded or ended: WHEN,fail=N, WHEN,success=N, WHEN,done=N (GNU parallel's)", "WHEN,WHAT=N",
           shown="never"),
    Option("--dry-run", bool, False, "batches: print the command of each job the batch would run, and run none",
           env=False),
]

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
