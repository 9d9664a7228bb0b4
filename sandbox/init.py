"""PID 1 of a thread's container: reaps the orphans commands leave behind.

It runs as root with every capability given up at start, so the sandbox user (another uid) can
neither trace, write nor signal it, and it holds no power of its own (devagent-run, started for
each command, keeps the command's time and stops what it leaves). `docker stop` sends TERM.
"""
import ctypes
import os
import signal
import sys

def drop_capabilities() -> None:
    """Empty the effective, permitted and inheritable sets (capset needs no capability to shrink)."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    libc = ctypes.CDLL(None, use_errno=True)
    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words
    if libc.capset(ctypes.byref(header), (Data * 2)()) != 0:
        print(f"devagent init: cannot drop capabilities: {os.strerror(ctypes.get_errno())}", file=sys.stderr)


def reap(*_: object) -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


drop_capabilities()
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
signal.signal(signal.SIGCHLD, reap)
reap()
while True:
    signal.pause()
