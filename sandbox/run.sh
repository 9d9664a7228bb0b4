#!/bin/sh
# POSIX sh (dash) keeps the per-command overhead small; the command itself runs in bash.
# Runs one approved command, exactly as given in $1, then stops every process it left behind so
# nothing unapproved keeps running after the command has returned. Exit status is the command's.
# The container's OOM-kill counter (cgroup v2, else v1) into $oom_kills; 0 when unreadable.
# Builtins only: after a fork bomb no process may be forked before the clean-up below.
count_oom_kills() {
    local f k v
    oom_kills=0
    for f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do
        if [ -r "$f" ]; then
            while read -r k v; do [ "$k" = oom_kill ] && { oom_kills=$v; return; }; done < "$f"
        fi
    done
}
count_oom_kills
oom_before=$oom_kills
/bin/bash -c "$1"
rc=$?
left=0
for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = 1 ] || [ "$p" = $$ ] || left=$((left + 1))
done
if [ "$left" -gt 0 ]; then
    kill -9 -1 2>/dev/null
    echo "[devagent] stopped $left process(es) the command left running" >&2
fi
count_oom_kills
if [ "$oom_kills" -gt "$oom_before" ]; then
    echo "[devagent] out of memory: the sandbox's memory limit was hit and the kernel killed $((oom_kills - oom_before)) process(es) of this command" >&2
fi
exit $rc
