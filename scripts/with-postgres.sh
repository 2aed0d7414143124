#!/usr/bin/env bash
# Run a command beside a throwaway PostgreSQL cluster (initdb in a temporary folder, a free port,
# removed afterwards). The command sees CITYOPS_TEST_DATABASE_URL pointing at the cluster.
set -euo pipefail

pgbin=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
  echo "with-postgres: no PostgreSQL server binaries found (run scripts/system-deps.sh)" >&2
  exit 1
fi

dir=$(mktemp -d /tmp/cityops-pg.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg=()
if [ "$(id -u)" = 0 ]; then
  # PostgreSQL refuses to run as root: the cluster belongs to the postgres system user.
  chown postgres "$dir"
  as_pg=(runuser -u postgres --)
fi

cleanup() {
  "${as_pg[@]}" "$pgbin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

"${as_pg[@]}" "$pgbin/initdb" -D "$dir/data" -A trust -U cityops -E UTF8 --locale=C.UTF-8 >/dev/null
# Durability settings off: this cluster is thrown away after the run.
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$dir/data" -w -l "$dir/server.log" \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
  start >/dev/null
echo "with-postgres: PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port" >&2

export CITYOPS_TEST_DATABASE_URL="postgresql+psycopg://cityops@127.0.0.1:$port/postgres"
"$@"
