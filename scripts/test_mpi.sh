#!/usr/bin/env bash
# The cluster's tests (cargo feature `mpi`): unit and doc tests, then the test binary
# across real ranks under mpirun (1, 2 and 4 ranks x 1 and 2 workers, and a rank with
# another build), the example and a quick run of the cluster benchmark. Installs Open MPI
# and libclang (bindgen needs it) with apt when they are missing. Every mpirun is bounded
# by `timeout`. The default test command (scripts/test.sh) needs none of this.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v mpirun >/dev/null 2>&1 || need+=(openmpi-bin)
dpkg -s libopenmpi-dev >/dev/null 2>&1 || need+=(libopenmpi-dev)
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
if ((${#need[@]})); then
  sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  echo "test_mpi.sh: installing ${need[*]}" >&2
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}"
fi

cargo clippy --features mpi --all-targets -- -D warnings
cargo test --features mpi --lib cluster::
# A doctest started without mpirun is a single-rank MPI job (Open MPI's singleton).
cargo test --features mpi --doc cluster
cargo build --features mpi --example cluster_tests --example cluster_mandelbrot --example cluster_bench

mpirun=(mpirun --allow-run-as-root --oversubscribe)
bin=target/debug/examples/cluster_tests
for np in 1 2 4; do
  for w in 1 2; do
    echo "== cluster_tests: $np ranks x $w workers"
    PROCYON_TEST_WORKERS=$w timeout 120 "${mpirun[@]}" -np "$np" "$bin"
  done
done
for np in 2 4; do
  echo "== cluster_tests: a rank with another build, $np ranks"
  PROCYON_TEST_MODE=mismatch timeout 60 "${mpirun[@]}" -np "$np" "$bin"
done

echo "== cluster_tests: a rank that goes silent during a job, 3 ranks"
PROCYON_TEST_MODE=silent timeout 60 "${mpirun[@]}" -np 3 "$bin"

# A rank killed during a job: Open MPI ends the whole MPI job (every rank, and with them
# their pools' processes), promptly, and says which rank died.
echo "== cluster_tests: a rank killed during a job, 3 ranks"
set +e
out=$(PROCYON_TEST_MODE=die timeout 60 "${mpirun[@]}" -np 3 "$bin" 2>&1)
rc=$?
set -e
echo "$out" | tail -n 8
if [ "$rc" = 0 ] || [ "$rc" = 124 ]; then
  echo "test_mpi.sh: expected mpirun to fail promptly after a rank died (exit $rc)" >&2
  exit 1
fi
echo "$out" | grep -q "rank 2" || { echo "test_mpi.sh: mpirun did not name rank 2" >&2; exit 1; }
# Live processes of the test binary (zombies waiting for their reaper do not count).
left() { ps -eo stat=,args= | awk '$1 !~ /^Z/' | grep -F "$bin" | grep -v grep || true; }
for _ in 1 2 3 4 5 6 7 8 9 10; do
  [ -z "$(left)" ] && break
  sleep 0.5
done
if [ -n "$(left)" ]; then
  echo "test_mpi.sh: processes of the MPI job are left behind:" >&2
  left >&2
  exit 1
fi

# The example on a small frame: the same checksum on 1 and on 4 ranks.
ex=(target/debug/examples/cluster_mandelbrot --width 320 --height 240 --max-iter 300 --workers 1)
one=$(timeout 120 "${mpirun[@]}" -np 1 "${ex[@]}" | sed -n 's/.*checksum \([0-9]*\).*/\1/p')
four=$(timeout 120 "${mpirun[@]}" -np 4 "${ex[@]}" | sed -n 's/.*checksum \([0-9]*\).*/\1/p')
echo "== cluster_mandelbrot: checksum $one on 1 rank, $four on 4"
[ -n "$one" ] && [ "$one" = "$four" ]

echo "== cluster_bench (quick)"
PROCYON_BENCH_QUICK=1 timeout 120 "${mpirun[@]}" -np 2 target/debug/examples/cluster_bench --workers 1
echo "test_mpi.sh: passed"
