#!/bin/sh
# PID 1 of a thread's PostgreSQL sidecar. On first start it creates the cluster in the thread's
# volume: the superuser is `postgres`, which has no password and so can only connect through the
# unix socket inside this container; the thread's role `devagent` (password from
# DEVAGENT_PG_PASSWORD, which every TCP connection must give) owns the database `devagent` and may
# create databases, but is a superuser only if DEVAGENT_PG_SUPERUSER=1. Then, and on every later
# start, it runs the server.
set -eu
PGDATA=${PGDATA:-/var/lib/postgresql/data/pgdata}
export PGDATA

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    password=${DEVAGENT_PG_PASSWORD:-}
    case $password in
        "" | *[!A-Za-z0-9_-]*)
            echo "devagent-postgres: DEVAGENT_PG_PASSWORD (letters, digits, _ and - only) is required to create the cluster" >&2
            exit 1 ;;
    esac
    if [ "${DEVAGENT_PG_SUPERUSER:-0}" = 1 ]; then role=SUPERUSER; else role=NOSUPERUSER; fi
    # Local (unix socket) connections exist only inside this container; over TCP a password
    # is always required, and `postgres` may not log in at all.
    initdb --pgdata="$PGDATA" --username=postgres --encoding=UTF8 \
        --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    printf 'host all postgres all reject\nhost all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' \
        >> "$PGDATA/pg_hba.conf"
    # Single-user mode: one statement per line; nothing is listening yet.
    postgres --single -D "$PGDATA" template1 >/dev/null <<SQL
CREATE ROLE devagent LOGIN $role CREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD '$password'
CREATE DATABASE devagent OWNER devagent
SQL
    echo "devagent-postgres: created the cluster in $PGDATA (role devagent: $role)"
fi
unset DEVAGENT_PG_PASSWORD DEVAGENT_PG_SUPERUSER

# log_statement=all: the server's own log (docker logs) holds every statement exactly as received.
exec postgres -D "$PGDATA" \
    -c listen_addresses='*' \
    -c log_statement=all \
    -c log_line_prefix='%m [%p] %q%u@%d ' \
    -c unix_socket_directories=/var/run/postgresql
