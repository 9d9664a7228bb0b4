#!/bin/sh
# devagent-run: runs one command for devagent inside a thread's container and makes sure nothing
# of it outlives it.
#
#   devagent-run shell UID GID TIMEOUT COMMAND    COMMAND exactly as given, via /bin/bash -c
#   devagent-run argv UID GID TIMEOUT PROG ARG...  one of devagent's own helpers (PROG is looked up
#                                                  in the system directories only)
#   devagent-run stop                              stop every process but PID 1
#
# It runs as root in the container (whose only capabilities are KILL, SETUID and SETGID) and the
# command runs as the sandbox user UID:GID with no capabilities, so the command can neither signal
# nor trace this script, its timer or PID 1. Before the command starts, everything but PID 1 is
# stopped (one command at a time: a command still running for a devagent that died is ended
# first); TIMEOUT seconds after, the timer below kills the command even if nobody on the host is
# waiting any more; after it returns, every process but PID 1 is killed (kill(-1) is atomic, so a
# forking process cannot slip out) and the sandbox user's are waited for. Exit status is the
# command's.
#
# POSIX sh (dash) keeps the per-command overhead small. Only builtins and absolute paths are used:
# the sandbox user can write ~/.local/bin, which comes first in the PATH commands see. After a fork
# bomb no process can be forked, so the clean-up uses builtins only.

# Every process but PID 1 and this one, killed at once; returns when all of them are gone (killed
# again each round, in case a process was started from outside meanwhile). kill(-1) fails only
# when there is no other process at all: then there is nothing to wait for.
stop_all() {
    kill -9 -1 2>/dev/null || return 0
    while :; do
        count_processes ""
        [ "$found" = 0 ] && return
        kill -9 -1 2>/dev/null
    done
}

# $found: how many processes other than PID 1, this one and $2 (if given: a process known to be
# root's) are alive (zombies run nothing); with $1, only those whose real, effective or saved uid
# is $1. dash reads a file one byte per system call: each status file is read no further than
# needed.
count_processes() {
    found=0
    for d in /proc/[0-9]*; do
        case ${d#/proc/} in 1|$$|$2) continue ;; esac
        state=
        {
            while read -r k a b c _; do
                case $k in
                    State:) state=$a; { [ -z "$1" ] || [ "$a" = Z ] || [ "$a" = X ]; } && break ;;
                    Uid:) [ "$a" = "$1" ] || [ "$b" = "$1" ] || [ "$c" = "$1" ] || state=; break ;;
                esac
            done < "$d/status"
        } 2>/dev/null
        case $state in ''|Z|X) ;; *) found=$((found + 1)) ;; esac
    done
}

# Kill every process of uid $1 (the timer: the command must end, this script must not).
kill_user() {
    for d in /proc/[0-9]*; do
        {
            while read -r k a b c _; do
                [ "$k" = Uid: ] || continue
                { [ "$a" = "$1" ] || [ "$b" = "$1" ] || [ "$c" = "$1" ]; } && kill -9 "${d#/proc/}"
                break
            done < "$d/status"
        } 2>/dev/null
    done
}

# The container's OOM-kill counter (cgroup v2, else v1) into $oom_kills; 0 when unreadable.
count_oom_kills() {
    oom_kills=0
    for f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do
        if [ -r "$f" ]; then
            while read -r k v; do [ "$k" = oom_kill ] && { oom_kills=$v; return; }; done < "$f"
        fi
    done
}

usage() {
    echo "usage: devagent-run shell|argv UID GID TIMEOUT COMMAND... | devagent-run stop" >&2
    exit 2
}

[ "$#" -ge 1 ] || usage
mode=$1
case $mode in
    stop) stop_all; exit 0 ;;
    shell|argv) [ "$#" -ge 5 ] || usage ;;
    *) usage ;;
esac
uid=$2 gid=$3 timeout=$4
shift 4
case $uid in ''|*[!0-9]*|0) echo "devagent-run: refusing uid '$uid'" >&2; exit 2 ;; esac
case $gid in ''|*[!0-9]*|0) echo "devagent-run: refusing gid '$gid'" >&2; exit 2 ;; esac
case $timeout in ''|*[!0-9.]*) echo "devagent-run: bad timeout '$timeout'" >&2; exit 2 ;; esac

stop_all
count_oom_kills
oom_before=$oom_kills

# The timer is this script's child: the kill(-1) after the command ends it, and a later
# command's stop_all ends it should this script die, so a stale deadline never reaches a later
# command. It has PID 1 keep the time (no process to start): it registers with PID 1 and waits
# on a FIFO nobody writes until PID 1 signals it; where PID 1 keeps no timers, /bin/sleep does.
wrapper=$$
time_up() {
    # Only while the command it was started for runs (its parent is still this script).
    while read -r k v; do
        [ "$k" = PPid: ] && { [ "$v" = "$wrapper" ] && kill_user "$uid"; break; }
    done < /proc/self/status
    exit 0
}
{
    trap time_up USR1
    # Its own pid ($$ is the script's): /proc/self resolved, cheaper than reading /proc/self/stat.
    me=
    cd -P /proc/self 2>/dev/null && me=${PWD##*/}
    if [ -n "$me" ] && [ -p /run/devagent/timers ] && [ -p /run/devagent/idle ] \
            && { echo "$me $timeout" > /run/devagent/timers; } 2>/dev/null; then
        read -r _ <> /run/devagent/idle
    else
        /bin/sleep "$timeout"
        time_up
    fi
} </dev/null >/dev/null 2>&1 &
timer=$!

if [ "$mode" = shell ]; then
    /usr/bin/setpriv --reuid="$uid" --regid="$gid" --clear-groups -- /bin/bash -c "$1"
else
    PATH=/usr/sbin:/usr/bin:/sbin:/bin /usr/bin/setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"
fi
rc=$?

# The timer is root's, never one of the command's: its status needs no reading here.
count_processes "$uid" "$timer"
left=$found
# Everything but PID 1 and this script (the timer too), at once; then wait only for the sandbox
# user's processes to be gone (the timer's, root's, need no waiting for).
while :; do
    kill -9 -1 2>/dev/null
    count_processes "$uid"
    [ "$found" = 0 ] && break
done
if [ "$left" -gt 0 ]; then
    echo "[devagent] stopped $left process(es) the command left running" >&2
fi
count_oom_kills
if [ "$oom_kills" -gt "$oom_before" ]; then
    echo "[devagent] out of memory: the sandbox's memory limit was hit and the kernel killed $((oom_kills - oom_before)) process(es) of this command" >&2
fi
exit $rc
