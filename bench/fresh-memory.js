// What touching fresh memory costs on this machine: a page fault per 4 KiB page. On a virtual
// machine that traps page-table updates to its hypervisor this is 10-20 us (against well under
// 1 us on bare metal), and it bounds anything that builds a large heap, such as planning.
import { execFileSync } from 'node:child_process';

/** Microseconds per page fault: a fresh process touching 256 MiB of new memory, median of 3. */
export function pageFaultMicros() {
  const script = `
    const n = 256 * 2 ** 20;
    const f0 = process.resourceUsage().minorPageFault;
    const t = process.hrtime.bigint();
    const b = Buffer.allocUnsafeSlow(n);
    for (let i = 0; i < n; i += 4096) b[i] = 1;
    const us = Number(process.hrtime.bigint() - t) / 1e3;
    console.log(us / (process.resourceUsage().minorPageFault - f0));`;
  const xs = [0, 1, 2].map(() => Number(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' })));
  return xs.sort((a, b) => a - b)[1];
}
