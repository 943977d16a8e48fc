#!/usr/bin/env bash
# `make bench`: Roster's benchmarks (issue #9) in --release, on this machine. Writes docs/benchmarks.md and
# target/bench/results.json. It reports figures against their targets; it never fails because one is missed.
#
#   QUICK=1                 10,000 users / 500 groups / 30,000 memberships (a couple of minutes)
#   BENCH_POSTGRES_URL      admin URL of a PostgreSQL server (trust auth); a `roster_bench` database is created
#                           and dropped. Defaults to ROSTER_TEST_POSTGRES_URL, then to
#                           postgres://postgres@127.0.0.1:5432/postgres when that answers; BENCH_POSTGRES_URL=none
#                           skips PostgreSQL.
#   BENCH_NOTE              a line printed in the report (e.g. "taken while other builds ran")
#   BENCH_ARGS              extra roster-bench flags (see target/release/roster-bench --help)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
scripts/apt-ensure.sh time wrk
cargo build --release --locked --workspace --bins

pg=${BENCH_POSTGRES_URL:-${ROSTER_TEST_POSTGRES_URL:-}}
if [ -z "$pg" ] && command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then
  pg=postgres://postgres@127.0.0.1:5432/postgres
fi
args=()
if [ -n "$pg" ] && [ "$pg" != none ]; then
  args+=(--postgres-url "$pg")
else
  echo "== PostgreSQL not benchmarked: set BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres =="
fi
if [ -n "${QUICK:-}" ] && [ "${QUICK}" != 0 ]; then
  args+=(--quick)
fi
if [ -n "${BENCH_NOTE:-}" ]; then
  args+=(--note "$BENCH_NOTE")
fi
# shellcheck disable=SC2206
args+=(${BENCH_ARGS:-})
mkdir -p target/bench
exec ./target/release/roster-bench "${args[@]}"
