"""The init (PID 1) of a job's PID namespace, which the fork server starts as root: it only waits,
reaping the job's orphans, until its lifeline closes; then it goes, and the kernel kills all the job left."""

import os
import signal
import struct


def spawn_init():
    """In the fork server: start the init (PID 1) of the new PID namespace; returns its
    pid and the fd that keeps it alive. It only waits, reaping the job's orphans (it
    ignores SIGCHLD), until that fd's pipe closes: when the fork server closes it, or
    dies, which no signal could miss."""
    lifeline, keep_alive = os.pipe()
    try:
        program = _init_programs[0]
        pid = _spawn_init_program(program, lifeline) if program else _fork_init(lifeline)
    finally:
        os.close(lifeline)
    return pid, keep_alive


# The init as a program of its own: rt_sigaction(SIGCHLD, SIG_IGN); read(0, sp, 1);
# exit_group(0), for x86-64 Linux. Spawned (vfork and exec), it costs far less than a
# fork of the fork server, whose page tables a fork copies and whose exit unmaps them,
# or than a dynamically linked program (bench/README.md, at da7e0f2).
INIT_PROGRAM_X86_64 = bytes.fromhex(
    "6a00" "6a00" "6a00" "6a01"  # a struct sigaction on the stack: SIG_IGN, no flags, empty mask
    "4889e6" "31d2" "41ba08000000" "bf11000000" "b80d000000" "0f05"  # rt_sigaction(17, rsp, 0, 8)
    "31ff" "ba01000000" "31c0" "0f05"  # read(0, rsp, 1): returns when the pipe closes
    "31ff" "b8e7000000" "0f05"  # exit_group(0)
)
_init_programs = []


def _init_program():
    """The path of the init program (in a memfd), or None where there is none (not
    x86-64, or the kernel does not execute memfds): the init is then a fork."""
    if os.uname().machine != "x86_64":
        return None
    fd = os.memfd_create("sieci-init", os.MFD_CLOEXEC)
    os.write(fd, _elf_executable(INIT_PROGRAM_X86_64))
    path = f"/proc/self/fd/{fd}"
    try:
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _, status = os.waitpid(_spawn_init_program(path, null), 0)
        finally:
            os.close(null)
        if status == 0:
            return path
    except OSError:
        pass
    os.close(fd)
    return None


def _spawn_init_program(path, lifeline):
    return os.posix_spawn(path, ["init"], {}, file_actions=[(os.POSIX_SPAWN_DUP2, lifeline, 0)],
                          setsigmask=())


def _elf_executable(code):
    """A static x86-64 ELF executable of ``code`` alone, loaded at 4 MiB, stack not executable."""
    base, header_size, entry_size = 0x400000, 64, 56
    start = header_size + 2 * entry_size
    header = b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack(
        "<HHIQQQIHHHHHH", 2, 0x3E, 1, base + start, header_size, 0, 0, header_size, entry_size, 2, 0, 0, 0)
    size = start + len(code)
    load = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)  # PT_LOAD, read and execute
    stack = struct.pack("<IIQQQQQQ", 0x6474E551, 6, 0, 0, 0, 0, 0, 16)  # PT_GNU_STACK, read and write
    return header + load + stack + code


def _fork_init(lifeline):
    pid = os.fork()
    if pid == 0:
        try:
            os.closerange(3, lifeline)
            os.closerange(lifeline + 1, 1 << 16)
            signal.signal(signal.SIGCHLD, signal.SIG_IGN)
            os.read(lifeline, 1)
        finally:
            os._exit(0)
    return pid


def find_program():
    """Try, once, whether the init can be the program (see _init_program), before a child of the
    fork server would be an init."""
    _init_programs.append(_init_program())
