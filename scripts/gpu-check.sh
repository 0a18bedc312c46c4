#!/usr/bin/env bash
# The GPU check, one command on a machine with an NVIDIA GPU and the CUDA toolkit (aimed at under 5
# minutes on one H100/H200): builds the CUDA variant of the addon, lists the devices, runs the GPU
# tests (and the kernel and device tests beside them), then the GPU benchmark: kernel GB/s against
# a device-to-device copy for 5 and 10 inputs, pinned host<->device GB/s, and end-to-end merges on
# the CPU and on the GPU of the same files (5 inputs, 10 inputs, many small tensors).
#
#   scripts/gpu-check.sh [bench options, e.g. --size 2GB --runs 3]
#
# Everything goes to stdout and, as one summary file, to $OUT/gpu-check.md ($OUT: the folder a
# device session brings back; ./gpu-check-out when unset), with the full logs beside it. Exit
# status: 0 when all passed, 1 when a step failed, 3 when no GPU was usable (tests skipped).
#
# Needs node_modules (npm ci, or carried over from a machine that has it). PMA_CUDA_ARCHS chooses
# the GPU targets; unset, the build is for the local GPUs only (faster), e.g. "90-real".
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$out"
summary="$out/gpu-check.md"
start=$(date +%s)
status=0
: >"$summary"
say() { echo "$*" | tee -a "$summary"; }
step() { say; say "## $* ($(($(date +%s) - start)) s)"; say; }
# Runs a step's command with its full log in $out/<name>.log; the summary keeps its tail.
run_step() {
  local name=$1 lines=$2
  shift 2
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  say '```'
  tail -n "$lines" "$out/$name.log" | tee -a "$summary"
  say '```'
  say "exit status $rc (full log: $name.log)"
  return $rc
}

say "# pma GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

step "machine"
say '```'
{ nvidia-smi --query-gpu=index,name,compute_cap,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi not found"; } | tee -a "$summary"
echo "$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB RAM; nvcc: $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' || echo none)" | tee -a "$summary"
say '```'

step "build (PMA_CUDA=1)"
if [ -z "${PMA_CUDA_ARCHS:-}" ]; then
  archs=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | tr -d ' .' | sort -u | sed 's/$/-real/' | paste -sd';')
  [ -n "$archs" ] && export PMA_CUDA_ARCHS="$archs"
fi
say "PMA_CUDA_ARCHS=${PMA_CUDA_ARCHS:-<default: native/sources.json>}"
if [ ! -d node_modules ]; then npm ci --ignore-scripts >"$out/npm-ci.log" 2>&1 || status=1; fi
run_step build 5 bash -c 'PMA_CUDA=1 node scripts/build-native.mjs && npx tsc -p tsconfig.json && cat build/pma-build.json' ||
  { say "the build failed: nothing else can run"; exit 1; }

step "devices"
run_step devices 20 node dist/bin/pma.js devices || status=1
usable=$(node dist/bin/pma.js devices --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).cuda.devices.filter(d=>d.usable).length))')
say "usable GPUs: $usable"
if [ "$usable" -gt 0 ]; then
  # Listing devices must create no CUDA context: a process that has listed them and is still alive
  # must not appear among the GPUs' compute processes.
  run_step no-context 3 node -e '
    const { cudaInfo } = require("./build/Release/pma.node");
    const n = cudaInfo().devices.length;
    const apps = require("child_process").execFileSync("nvidia-smi", ["--query-compute-apps=pid", "--format=csv,noheader"], { encoding: "utf8" });
    const mine = apps.split("\n").map((l) => l.trim()).includes(String(process.pid));
    console.log(`listed ${n} GPU(s); this process holds a CUDA context: ${mine ? "YES (a bug)" : "no"}`);
    process.exit(mine ? 1 : 0);' || status=1
fi

step "GPU tests (with the CPU kernel and device tests beside them)"
run_step tests 60 npx vitest run test/gpu test/native test/unit/cuda-compat.test.ts test/integration/devices.test.ts \
  test/integration/fp8-golden.test.ts --reporter=verbose || status=1
say "failed tests (none when empty), and how many were skipped (all of test/gpu without a usable GPU):"
say '```'
grep -E '^ *(×|✗|FAIL) ' "$out/tests.log" | head -40 | tee -a "$summary"
echo "skipped: $(grep -cE '^ *↓ ' "$out/tests.log")" | tee -a "$summary"
say '```'

if [ "$usable" -gt 0 ]; then
  step "benchmark"
  run_step bench 120 node bench/gpu.bench.js --dir "${PMA_GPU_BENCH_DIR:-.bench-data/gpu}" --summary "$out/gpu-bench.md" "$@" ||
    status=1
else
  say "no usable GPU: the GPU tests were skipped and the benchmark not run"
  [ "$status" -eq 0 ] && status=3
fi

step "done: exit status $status"
exit $status
