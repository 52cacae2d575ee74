#!/bin/sh
# The official postgres image's entrypoint, in short, over Debian's server binaries ($1 = their directory):
# nss_wrapper for a uid without a passwd entry (libnss-wrapper), initdb on an empty PGDATA (superuser POSTGRES_USER with POSTGRES_PASSWORD, scram-sha-256 from any host),
# POSTGRES_DB created once, then `postgres` in the foreground with the container's args ("postgres -c ...").
set -eu
bindir=$1
shift
[ "${1:-}" = postgres ] && shift
: "${POSTGRES_PASSWORD:?is required (as with the official image); set it from a Secret}"
user=${POSTGRES_USER:-postgres}
PGDATA=${PGDATA:-/var/lib/postgresql/data}
if [ "$(id -u)" = 0 ]; then
  echo "postgres refuses to run as root: set securityContext.runAsUser (e.g. 999)" >&2
  exit 1
fi
if ! getent passwd "$(id -u)" >/dev/null; then
  # initdb wants a passwd entry for its uid: nss_wrapper gives one, as the official entrypoint does.
  wrap=$(mktemp -d)
  echo "postgres:x:$(id -u):$(id -g):PostgreSQL:$PGDATA:/bin/false" > "$wrap/passwd"
  echo "postgres:x:$(id -g):" > "$wrap/group"
  export LD_PRELOAD=libnss_wrapper.so NSS_WRAPPER_PASSWD="$wrap/passwd" NSS_WRAPPER_GROUP="$wrap/group"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  printf '%s\n' "$POSTGRES_PASSWORD" | "$bindir/initdb" -D "$PGDATA" -U "$user" --pwfile=/dev/stdin \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --no-locale >/dev/null
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  db=${POSTGRES_DB:-$user}
  if [ "$db" != postgres ]; then
    echo "CREATE DATABASE \"$db\";" | "$bindir/postgres" --single -D "$PGDATA" -j postgres >/dev/null
  fi
  echo "initialized $PGDATA (superuser $user, database $db)"
fi
exec "$bindir/postgres" -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories= "$@"
