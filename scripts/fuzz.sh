#!/usr/bin/env bash
# `make fuzz`: runs each cargo-fuzz target for a fixed budget (FUZZ_SECONDS, default 60) on the corpus kept in
# fuzz/corpus/. Needs a nightly toolchain (libFuzzer and sanitizers); installs cargo-fuzz when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
rustup toolchain list | grep -q '^nightly' || {
  echo "error: cargo-fuzz needs a nightly toolchain: run 'rustup toolchain install nightly'" >&2; exit 1; }
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
status=0
for target in substitute saml_response saml_metadata; do
  echo "== fuzz $target for ${SECONDS_PER_TARGET}s =="
  if ! (cd fuzz && cargo +nightly fuzz run "$target" "corpus/$target" -- \
      -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 -print_final_stats=1); then
    echo "FAILED: fuzz target $target found a crash (see fuzz/artifacts/$target)" >&2
    status=1
  fi
done
exit $status
