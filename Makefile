# Roster: the two commands that matter are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ROSTER_TEST_POSTGRES_URL ?=
CARGO_TEST ?= cargo test --locked --workspace

.PHONY: help deps test-deps build run demo test test-sqlite test-postgres lint fmt bench fuzz soak

help:
	@echo "make run    build and serve Roster on SQLite (installs missing system packages)"
	@echo "make test   install the test peers and run the whole suite (SQLite, and PostgreSQL when"
	@echo "            ROSTER_TEST_POSTGRES_URL is set, e.g. postgres://postgres@127.0.0.1:5432/postgres)"
	@echo "make demo   Roster plus an emulated Entra ID tenant with 10,000 users (no Azure needed)"
	@echo "make lint   cargo fmt --check and clippy with warnings as errors"
	@echo "make bench  release benchmarks (100,000 users; QUICK=1 for 10,000): writes docs/benchmarks.md and"
	@echo "            target/bench/results.json; PostgreSQL via BENCH_POSTGRES_URL (default: local :5432)"
	@echo "make soak   60 s at 64 connections over mixed admin pages (release build): zero errors, stable RSS"
	@echo "make fuzz   run each fuzz target for FUZZ_SECONDS (default 60; needs the nightly toolchain)"

deps:
	@scripts/install-deps.sh

test-deps:
	@scripts/install-test-deps.sh

build: deps
	cargo build --release --locked

run: build
	./target/release/roster serve

demo: deps
	@scripts/demo.sh

bench:
	@QUICK="$(QUICK)" scripts/bench.sh

test: test-deps test-sqlite test-postgres

test-sqlite:
	@echo "== Test suite on SQLite =="
	env -u ROSTER_TEST_POSTGRES_URL $(CARGO_TEST)

test-postgres:
	@if [ -z "$(ROSTER_TEST_POSTGRES_URL)" ]; then \
	  if [ "$$CI" = "true" ]; then echo "error: CI must set ROSTER_TEST_POSTGRES_URL" >&2; exit 1; fi; \
	  echo "== PostgreSQL half NOT run: set ROSTER_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres to run it =="; \
	else \
	  echo "== Test suite on PostgreSQL ==" && \
	  scripts/drop-test-databases.sh "$(ROSTER_TEST_POSTGRES_URL)" && \
	  ROSTER_TEST_POSTGRES_URL="$(ROSTER_TEST_POSTGRES_URL)" $(CARGO_TEST) && \
	  scripts/drop-test-databases.sh "$(ROSTER_TEST_POSTGRES_URL)"; \
	fi

soak:
	@scripts/soak.sh

fuzz:
	@scripts/fuzz.sh

lint:
	cargo fmt --all --check
	cargo clippy --locked --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all
