#!/usr/bin/env bash
# The cluster benchmark (see benches/mpi/cluster.rs): W1 and the tiny-job fixed cost with
# 2 ranks x 1 worker and with 1 rank x 2 workers, the two configurations alternated for
# PASSES passes (default 1). Needs Open MPI (scripts/test_mpi.sh installs it). Run it on
# an otherwise idle machine, and note `uptime` next to the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
passes=${PASSES:-1}
cargo build --release --features mpi --example cluster_bench
mpirun=(mpirun --allow-run-as-root --oversubscribe)
bin=target/release/examples/cluster_bench
uptime
for ((p = 1; p <= passes; p++)); do
  timeout 600 "${mpirun[@]}" -np 2 "$bin" --workers 1 "$@"
  timeout 600 "${mpirun[@]}" -np 1 "$bin" --workers 2 "$@"
done
uptime
