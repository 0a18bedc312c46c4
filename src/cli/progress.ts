import type { Progress } from '../run/run-chunks.js';
import { formatBytes, formatDuration, formatRate } from './format.js';

/** A one-line progress bar on a terminal: bytes done, GB/s, ETA. Redraws at most 10 times a second. */
export function progressBar(stream: NodeJS.WriteStream): { update: (p: Progress) => void; end: () => void } {
  let last = 0;
  let drawn = false;
  const update = (p: Progress) => {
    const now = performance.now();
    if (now - last < 100 && p.chunksDone < p.chunksTotal) return;
    last = now;
    const frac = p.bytesTotal > 0 ? p.bytesDone / p.bytesTotal : 1;
    const width = 30;
    const fill = Math.round(frac * width);
    const rate = p.bytesDone / Math.max(p.elapsedMs / 1000, 1e-3);
    const eta = rate > 0 ? ((p.bytesTotal - p.bytesDone) / rate) * 1000 : 0;
    const line = `[${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${(frac * 100).toFixed(0).padStart(3)}% ${formatBytes(p.bytesDone)}/${formatBytes(p.bytesTotal)} ${formatRate(rate)} ETA ${formatDuration(eta)}`;
    stream.write(`\r${line}\x1b[K`);
    drawn = true;
  };
  const end = () => {
    if (drawn) stream.write('\r\x1b[K');
  };
  return { update, end };
}
