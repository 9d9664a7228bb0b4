#!/bin/sh
# PID 1 of a thread's PostgreSQL sidecar. On first start it creates the cluster in the thread's
# volume (superuser `devagent`, database `devagent`, password from DEVAGENT_PG_PASSWORD, which
# every TCP connection must give); then, and on every later start, it runs the server.
set -eu
PGDATA=${PGDATA:-/var/lib/postgresql/data/pgdata}
export PGDATA

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${DEVAGENT_PG_PASSWORD:-}" ]; then
        echo "devagent-postgres: DEVAGENT_PG_PASSWORD is required to create the cluster" >&2
        exit 1
    fi
    pwfile=$(mktemp)
    printf '%s\n' "$DEVAGENT_PG_PASSWORD" > "$pwfile"
    # Local (unix socket) connections exist only inside this container; over TCP a password
    # is always required.
    initdb --pgdata="$PGDATA" --username=devagent --pwfile="$pwfile" --encoding=UTF8 \
        --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
    echo "CREATE DATABASE devagent" | postgres --single -D "$PGDATA" template1 >/dev/null
    echo "devagent-postgres: created the cluster in $PGDATA"
fi
unset DEVAGENT_PG_PASSWORD

# log_statement=all: the server's own log (docker logs) holds every statement exactly as received.
exec postgres -D "$PGDATA" \
    -c listen_addresses='*' \
    -c log_statement=all \
    -c log_line_prefix='%m [%p] %q%u@%d ' \
    -c unix_socket_directories=/var/run/postgresql
