#!/bin/bash
# Runs one approved command, exactly as given in $1, then stops every process it left behind so
# nothing unapproved keeps running after the command has returned. Exit status is the command's.
bash -c "$1"
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
exit $rc
