#!/usr/bin/env bash
# The test command from README.md: every unit, integration and doc test, then the loom
# model checks of the camlbox slot protocol and of the job slots' claim / pin protocol.
#
# cargo-nextest runs every test in a process of its own; when it is missing the script
# installs it, and when that fails too (offline, no compiler for it) it runs the same
# tests with plain `cargo test`, which must pass as well.
set -euo pipefail
cd "$(dirname "$0")/.."

have_nextest() { cargo nextest --version >/dev/null 2>&1; }

if ! have_nextest; then
  echo "test.sh: cargo-nextest is not installed; trying: cargo install cargo-nextest --locked" >&2
  cargo install cargo-nextest --locked || true
fi
if have_nextest; then
  cargo nextest run --no-fail-fast
  cargo test --doc
else
  echo "test.sh: cargo-nextest is unavailable; running plain cargo test instead" >&2
  cargo test --no-fail-fast
fi
# tokio (a dev-dependency) builds under --cfg loom only with its "sync" feature.
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=target/loom \
  cargo test --release --lib --features tokio/sync -- camlbox::loom_tests jobs::loom_tests sync::loom_tests
