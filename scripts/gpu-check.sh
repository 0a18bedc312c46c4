#!/usr/bin/env bash
# The GPU check, one command on a machine with an NVIDIA GPU and the CUDA toolkit (under 5 minutes
# on one H100): builds the CUDA variant of the addon, runs the GPU tests (and the kernel and device
# tests beside them), then prints the GPU benchmark table: kernel GB/s against a device-to-device
# copy, pinned host<->device GB/s, and an end-to-end merge on the CPU and on the GPU, same files.
#
#   scripts/gpu-check.sh [bench options, e.g. --size 2GB --inputs 5 --runs 3]
#
# Needs node_modules (npm ci, or carried over from a machine that has it). Set PMA_CUDA_ARCHS=90-real
# to build for the local GPU only, faster.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - start )) s)"; }

step "machine"
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi not found"
nproc; free -g | head -2

step "build (PMA_CUDA=1)"
if [ ! -d node_modules ]; then npm ci --ignore-scripts; fi
PMA_CUDA=1 node scripts/build-native.mjs
npx tsc -p tsconfig.json
node dist/cli/main.js devices

step "GPU tests (and the CPU kernel and device tests beside them)"
npx vitest run test/gpu test/native test/integration/devices.test.ts test/integration/fp8-golden.test.ts --reporter=verbose 2>&1 | grep -v '^\s*$' | tail -60
node -e 'const g=require("./build/Release/pma.node").cudaInfo().devices.filter(d=>d.usable); if(!g.length){console.error("no usable GPU: the GPU tests above were skipped"); process.exit(3)}'

step "benchmark"
node bench/gpu.bench.js "$@"
step "done"
