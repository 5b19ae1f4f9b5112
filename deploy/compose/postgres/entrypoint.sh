#!/bin/sh
# First start: create the cluster, the bridge's role (password from a file) and its
# database, and Grafana's read-only role when GRAFANA_DB_PASSWORD_FILE is set. Every start: run the server in the foreground, listening for the stack.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    password=$(head -n 1 "$POSTGRES_PASSWORD_FILE")
    initdb --pgdata="$PGDATA" --username=postgres --auth-local=peer \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses=''" --wait start >/dev/null
    psql --quiet --username=postgres --dbname=postgres --set=ON_ERROR_STOP=1 \
        --set=user="$POSTGRES_USER" --set=password="$password" --set=db="$POSTGRES_DB" <<'SQL'
CREATE ROLE :"user" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"user";
SQL
    if [ -n "${GRAFANA_DB_PASSWORD_FILE:-}" ]; then
        # Grafana's role may only read: SELECT on every table the bridge's role creates
        # (the migration runs later), in read-only transactions.
        psql --quiet --username=postgres --dbname="$POSTGRES_DB" --set=ON_ERROR_STOP=1 \
            --set=user="$POSTGRES_USER" --set=db="$POSTGRES_DB" \
            --set=reader="${GRAFANA_DB_USER:-cultivai_grafana}" \
            --set=password="$(head -n 1 "$GRAFANA_DB_PASSWORD_FILE")" <<'SQL'
CREATE ROLE :"reader" LOGIN PASSWORD :'password';
ALTER ROLE :"reader" SET default_transaction_read_only = on;
GRANT CONNECT ON DATABASE :"db" TO :"reader";
GRANT USAGE ON SCHEMA public TO :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"user" IN SCHEMA public GRANT SELECT ON TABLES TO :"reader";
SQL
    fi
    pg_ctl --pgdata="$PGDATA" --mode=fast --wait stop >/dev/null
fi
exec postgres -c listen_addresses="${POSTGRES_LISTEN_ADDRESSES:-*}" -c unix_socket_directories=/tmp
