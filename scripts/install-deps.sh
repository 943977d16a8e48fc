#!/usr/bin/env bash
# What `make run` needs to build Roster on Debian/Ubuntu: a C toolchain (aws-lc-sys, SQLite), pkg-config, and
# libxmlsec1 + libxml2 + OpenSSL headers with libclang for samael's bindgen (SAML signature checks).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "error: Rust is not installed; install it from rustup.rs, then run make again" >&2; exit 1; }
scripts/apt-ensure.sh build-essential pkg-config ca-certificates libssl-dev libxml2-dev libxmlsec1-dev libclang1-14 libclang-common-14-dev
