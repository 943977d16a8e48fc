#!/usr/bin/env bash
# `make soak`: 60 seconds (SOAK_SECONDS) at 64 connections over mixed admin pages of a synced 10,000-user
# directory, against the release binary on SQLite. Fails on any error or when the server's RSS keeps growing.
# Writes target/bench/soak.json.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
cargo build --release --locked --workspace --bins
mkdir -p target/bench
exec ./target/release/roster-bench --soak --connections "${SOAK_CONNECTIONS:-64}" --duration "${SOAK_SECONDS:-60}"
