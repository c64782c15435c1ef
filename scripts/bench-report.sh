#!/usr/bin/env bash
# One command that regenerates BENCHMARKS.md (issue 16): runs every engine workload (W1-W8
# and pool build/drop), issue 14's variable-size items (columnar), issue 13's adapters and
# issue 15's process-shared sync against the sequential loop, rayon or the in-process
# baselines, interleaved in blocks, records the run's conditions (the machine's hand-off
# costs measured at its start and end among them), then writes the report and the plot
# from that run's results only.
#
#   flock /tmp/bench.lock bash scripts/bench-report.sh [--full] [--out FILE] [--plot FILE]
#
# Quick mode (the default: PROCYON_BENCH_QUICK=1, fewer rounds, W1 at 1024 x 1024; the
# 5 M strings and the 50 MB text keep issue 14's sizes) fits in about 15 minutes on 2
# cores; --full runs the full sizes and rounds. PROCYON_BENCH_WORKERS
# (a list, e.g. 1,2,4; default 2) is passed on to every bench. --out (default BENCHMARKS.md)
# and --plot (default docs/speedup.png) say where the report and plot go.
#
# Results: <target dir>/bench-report/{results.jsonl, meta.tsv, log.txt}. Run it on an idle
# machine (the load before and after every bench goes into the report), and under
# `flock /tmp/bench.lock` where other people's benchmarks may run.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=quick
out=BENCHMARKS.md
plot=docs/speedup.png
while [ $# -gt 0 ]; do
  case "$1" in
    --full) mode=full ;;
    --quick) mode=quick ;;
    --out) out="$2"; shift ;;
    --plot) plot="$2"; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "bench-report.sh: unknown argument $1 (expected --full, --out FILE, --plot FILE)" >&2; exit 2 ;;
  esac
  shift
done

target="${CARGO_TARGET_DIR:-target}"
dir="${PROCYON_BENCH_REPORT_DIR:-$target/bench-report}"
mkdir -p "$dir"
: > "$dir/results.jsonl"
: > "$dir/log.txt"
export PROCYON_BENCH_REPORT_DIR="$dir"
export PROCYON_BENCH_ROUNDS_ONLY=1
if [ "$mode" = quick ]; then export PROCYON_BENCH_QUICK=1; else unset PROCYON_BENCH_QUICK; fi
workers="${PROCYON_BENCH_WORKERS:-2}"
export PROCYON_BENCH_WORKERS="$workers"
start=$(date +%s)

meta="$dir/meta.tsv"
{
  flag=""; [ "$mode" = full ] && flag=" --full"
  printf 'command\t%s\n' "PROCYON_BENCH_WORKERS=$workers bash scripts/bench-report.sh$flag ($mode mode)"
  printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  # The report's own outputs (a previous run's table and plot) are not code that runs.
  if [ -n "$(git status --porcelain --untracked-files=no -- . ":(exclude)$out" ":(exclude)$plot" 2>/dev/null)" ]; then
    commit="$commit (tree dirty: uncommitted changes were measured)"
  fi
  printf 'commit\t%s\n' "$commit"
  printf 'cores\t%s\n' "$(nproc)"
  printf 'cpu\t%s\n' "$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
  # As reported, recorded only: nothing decides anything from them.
  lscpu 2>/dev/null | sed -n 's/^\(L[0-9][di]* cache\): *\(.*\)/\1 (lscpu)\t\2/p'
  for c in /sys/devices/system/cpu/cpu0/cache/index*; do
    [ -r "$c/size" ] || continue
    printf 'cache (sysfs, cpu0)\tL%s %s %s\n' "$(cat "$c/level")" "$(cat "$c/type")" "$(cat "$c/size")"
  done
  printf 'memory\t%s\n' "$(free -g 2>/dev/null | awk '/^Mem:/ {print $2 " GiB"}')"
  printf 'rustc\t%s\n' "$(rustc --version)"
  printf 'load at start\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
} > "$meta"

echo "bench-report: building the benches (mode $mode, workers $workers)" >&2
benches=(workloads engine bandwidth nested wordcount columnar adapters sync)
cargo bench --no-run $(printf -- '--bench %s ' "${benches[@]}") 2>&1 | tail -3 >&2
cargo build --release --example bench_report --example plot_speedup 2>&1 | tail -1 >&2
# The machine's hand-off costs (examples/bench_report/probe.rs), at the start and at the
# end: two runs whose probes differ were taken on two different machines, in effect.
probe() {
  "$target/release/examples/bench_report" --probe | sed "s/^probe: /probe at $1: /" >> "$meta"
}
probe start

# Each bench records its results and its load before and after into results.jsonl.
for bench in "${benches[@]}"; do
  echo "bench-report: cargo bench --bench $bench (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  # The figures as they come (the whole output goes to log.txt); a failing bench stops
  # the run (pipefail), with its output in the log.
  if ! cargo bench --bench "$bench" 2>&1 | tee -a "$dir/log.txt" \
      | { grep -E '^(w[0-9]|lifecycle|columnar|adapters|sync|load)' >&2 || true; }; then
    echo "bench-report: cargo bench --bench $bench failed; its output is in $dir/log.txt" >&2
    exit 1
  fi
done

end=$(date +%s)
printf 'load at end\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >> "$meta"
probe end
printf 'duration\t%s\n' "$(( (end - start) / 60 )) min $(( (end - start) % 60 )) s (builds included)" >> "$meta"

"$target/release/examples/bench_report" --dir "$dir" --out "$out"
if "$target/release/examples/plot_speedup" --results "$dir/results.jsonl" --out "$plot"; then
  :
else
  echo "bench-report: the plot was not drawn (see above); the tables are in $out" >&2
fi
echo "bench-report: done in $(( (end - start) / 60 )) min $(( (end - start) % 60 )) s; results in $dir" >&2
