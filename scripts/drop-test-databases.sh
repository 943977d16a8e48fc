#!/usr/bin/env bash
# Drops the PostgreSQL databases left by earlier test runs (roster_test_*), so runs do not pile up.
# Usage: scripts/drop-test-databases.sh POSTGRES_URL
set -euo pipefail
url="$1"
dbs=$(psql "$url" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'roster\_test\_%'")
n=0
for db in $dbs; do
  psql "$url" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" && n=$((n + 1))
done
echo "Dropped $n leftover test databases."
