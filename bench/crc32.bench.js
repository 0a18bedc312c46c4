#!/usr/bin/env node
// CRC-32 throughput: the addon's (PCLMULQDQ folding where the CPU has it), which a DCP merge runs
// over every averaged byte, against Node's zlib.crc32, on the same 8 MiB buffer, medians of --runs.
//
//   node bench/crc32.bench.js [--runs 9] [--mib 512]
import { parseArgs } from 'node:util';
import { crc32 } from 'node:zlib';

import { native } from '../dist/native.js';

const { values } = parseArgs({
  options: { runs: { type: 'string', default: '9' }, mib: { type: 'string', default: '512' } },
});
const block = Buffer.alloc(8 << 20);
for (let i = 0; i < block.length; i++) block[i] = (i * 2654435761) >>> 24;
const blocks = Number(values.mib) / 8;
const rate = (f) => {
  const t = performance.now();
  let c = 0;
  for (let i = 0; i < blocks; i++) c = f(block, c);
  return (blocks * block.length) / 1e9 / ((performance.now() - t) / 1000);
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const addon = [];
const zlib = [];
for (let r = 0; r < Number(values.runs); r++) {
  addon.push(rate((b, c) => native().crc32(b, c)));
  zlib.push(rate((b, c) => crc32(b, c)));
}
if (native().crc32(block, 0) !== crc32(block) >>> 0) throw new Error('the two CRC-32s differ');
console.log(
  `CRC-32 of ${values.mib} MiB, median of ${values.runs}: addon ${median(addon).toFixed(2)} GB/s, zlib.crc32 ${median(zlib).toFixed(2)} GB/s`,
);
