"""PID 1 of a thread's container: waits forever and reaps the orphans commands leave behind.

It has no child of its own, so after a command returns, every other process in the container
is something the command left running (devagent-run stops those). `docker stop` sends TERM.
"""
import os
import signal
import sys

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
# A handler (not SIG_IGN) so that pause() wakes up when an orphan exits.
signal.signal(signal.SIGCHLD, lambda *_: None)
while True:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
    signal.pause()
