"""PID 1 of a thread's container: reaps the orphans commands leave behind and keeps the clock
for command timeouts.

It runs as root with every capability given up at start, so the sandbox user (another uid) can
neither trace, write nor signal it, and it holds no power of its own. devagent-run's timer for a
command (a root process) registers through a FIFO only root can open: "PID SECONDS". When the
time is up PID 1 sends that very process (held by a pidfd, so never another one that reused the
number) SIGUSR1, and the timer kills the command. A timer that is gone before is forgotten.
`docker stop` sends TERM.
"""
import ctypes
import heapq
import itertools
import os
import select
import signal
import sys
import time

TIMERS_FIFO = "/run/devagent/timers"
# Nobody ever writes here: a timer blocks reading it until PID 1 signals it.
IDLE_FIFO = "/run/devagent/idle"


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


def open_fifo() -> int | None:
    """The timers FIFO, held open for reading and writing so it never reports end of file."""
    try:
        os.makedirs(os.path.dirname(TIMERS_FIFO), mode=0o700, exist_ok=True)
        os.chmod(os.path.dirname(TIMERS_FIFO), 0o700)
        for path in (TIMERS_FIFO, IDLE_FIFO):
            if os.path.lexists(path):
                os.unlink(path)
            os.mkfifo(path, 0o600)
        return os.open(TIMERS_FIFO, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:  # devagent-run then times commands with a sleep of its own
        print(f"devagent init: no timers FIFO: {exc}", file=sys.stderr)
        return None


def serve(fifo: int) -> None:
    poller = select.poll()
    poller.register(fifo, select.POLLIN)
    deadlines: list[tuple[float, int]] = []  # (monotonic deadline, timer number), earliest first
    waiting: dict[int, int] = {}  # timer number -> pidfd, for the timers still waiting
    by_fd: dict[int, int] = {}  # pidfd -> timer number
    numbers = itertools.count()
    pending = b""

    def forget(number: int) -> None:
        pidfd = waiting.pop(number)
        del by_fd[pidfd]
        poller.unregister(pidfd)
        os.close(pidfd)

    while True:
        now = time.monotonic()
        while deadlines and (deadlines[0][0] <= now or deadlines[0][1] not in waiting):
            _, number = heapq.heappop(deadlines)
            if number in waiting:
                try:
                    signal.pidfd_send_signal(waiting[number], signal.SIGUSR1)
                except OSError:  # exited meanwhile: nothing to time any more
                    pass
                forget(number)
        wait_ms = None if not deadlines else max(0, int((deadlines[0][0] - now) * 1000) + 1)
        for fd, _events in poller.poll(wait_ms):
            if fd != fifo:  # a pidfd is readable once its process has exited
                if fd in by_fd:
                    forget(by_fd[fd])
                continue
            try:
                pending += os.read(fifo, 4096)
            except BlockingIOError:
                continue
            *lines, pending = pending.split(b"\n")
            for line in lines:
                try:
                    pid_text, seconds_text = line.split()
                    pid, seconds = int(pid_text), float(seconds_text)
                    pidfd = os.pidfd_open(pid)
                except (ValueError, OSError):
                    continue
                number = next(numbers)
                waiting[number], by_fd[pidfd] = pidfd, number
                poller.register(pidfd, select.POLLIN)
                heapq.heappush(deadlines, (time.monotonic() + seconds, number))


drop_capabilities()
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
signal.signal(signal.SIGCHLD, reap)
reap()
fifo = open_fifo() if os.getuid() == 0 else None
if fifo is not None:
    serve(fifo)
while True:
    signal.pause()
