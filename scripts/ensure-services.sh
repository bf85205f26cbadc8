#!/usr/bin/env bash
# Make sure the services the integration tests need are present (run as root in CI; idempotent).
#
# * RabbitMQ: the tests boot their own private nodes from the Debian package's
#   /usr/lib/rabbitmq/bin/rabbitmq-server (tests/support/broker.py), so only the
#   package must be installed; the system node is neither needed nor touched.
# * PostgreSQL: the PostgreSQL test run needs a server on 127.0.0.1:5432 with trust
#   auth for user postgres.  If PostgreSQL is not installed, that run is skipped;
#   if it is installed but down, it is started.
#
# Prints one line per service saying what it found or did.
set -euo pipefail

RABBITMQ_SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
PG_HOST=127.0.0.1
PG_PORT=5432
PG_START_TIMEOUT=30 # seconds

need_root() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "$1: must run as root to $2" >&2
        exit 1
    fi
}

# ---------------------------------------------------------------- RabbitMQ
if [[ -x $RABBITMQ_SERVER ]]; then
    echo "RabbitMQ: found $RABBITMQ_SERVER (package $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo 'version unknown'))"
else
    need_root RabbitMQ "install rabbitmq-server"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq rabbitmq-server >/dev/null
    if [[ ! -x $RABBITMQ_SERVER ]]; then
        echo "RabbitMQ: installed rabbitmq-server but $RABBITMQ_SERVER is still missing" >&2
        exit 1
    fi
    echo "RabbitMQ: installed rabbitmq-server $(dpkg-query -W -f='${Version}' rabbitmq-server)"
fi

# -------------------------------------------------------------- PostgreSQL
pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2; }

# Newest installed major version (ls /etc/postgresql lists one directory per version).
pg_version=""
if [[ -d /etc/postgresql ]]; then
    pg_version=$(ls /etc/postgresql | sort -V | tail -n 1)
fi

if ! command -v pg_isready >/dev/null 2>&1 || ! command -v pg_ctlcluster >/dev/null 2>&1 || [[ -z $pg_version ]]; then
    echo "PostgreSQL: not installed; the PostgreSQL test run will be skipped"
elif pg_ready; then
    echo "PostgreSQL: $pg_version already accepting connections on $PG_HOST:$PG_PORT"
else
    need_root PostgreSQL "start cluster $pg_version/main"
    pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start
    # pg_ctlcluster returns once the postmaster runs; wait (bounded) until it accepts connections.
    deadline=$((SECONDS + PG_START_TIMEOUT))
    until pg_ready; do
        if ((SECONDS >= deadline)); then
            echo "PostgreSQL: started cluster $pg_version/main but $PG_HOST:$PG_PORT is not ready after ${PG_START_TIMEOUT}s" >&2
            exit 1
        fi
        sleep 0.5
    done
    echo "PostgreSQL: started cluster $pg_version/main; accepting connections on $PG_HOST:$PG_PORT"
fi
