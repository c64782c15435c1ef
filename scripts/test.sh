#!/usr/bin/env bash
# The test command from README.md: every unit, integration and doc test, then the loom
# model checks of the camlbox slot protocol and of the job slots' claim / pin protocol.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo nextest run --no-fail-fast
cargo test --doc
# tokio (a dev-dependency) builds under --cfg loom only with its "sync" feature.
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=target/loom \
  cargo test --release --lib --features tokio/sync -- camlbox::loom_tests jobs::loom_tests
