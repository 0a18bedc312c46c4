import type { AnalyzeResult } from './analyze.js';
import type { DeviationStats } from './moments.js';

// The self-contained page of `pma analyze --report`: inline SVG and CSS, no script, no request
// leaves it.

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const fmt = (x: number | null) =>
  x === null || !Number.isFinite(x)
    ? '–'
    : Math.abs(x) >= 1e4 || (Math.abs(x) < 1e-3 && x !== 0)
      ? x.toExponential(3)
      : x.toPrecision(4);

const W = 640;
const H = 240;
const PAD = { l: 64, r: 16, t: 16, b: 48 };

function axes(yMin: number, yMax: number, labels: string[]): string {
  const parts: string[] = [];
  for (let i = 0; i <= 4; i++) {
    const v = yMin + ((yMax - yMin) * i) / 4;
    const y = H - PAD.b - ((H - PAD.t - PAD.b) * i) / 4;
    parts.push(
      `<line x1="${PAD.l}" x2="${W - PAD.r}" y1="${y}" y2="${y}" class="grid"/><text x="${PAD.l - 6}" y="${y + 4}" text-anchor="end">${fmt(v)}</text>`,
    );
  }
  const step = (W - PAD.l - PAD.r) / Math.max(1, labels.length);
  const every = Math.max(1, Math.ceil(labels.length / 16));
  labels.forEach((l, i) => {
    if (i % every === 0)
      parts.push(`<text x="${PAD.l + step * (i + 0.5)}" y="${H - PAD.b + 16}" text-anchor="middle">${esc(l)}</text>`);
  });
  return parts.join('');
}

/** Bars, one per label; negative values hang below zero. */
export function barChart(title: string, labels: string[], values: (number | null)[]): string {
  const finite = values.filter((x): x is number => x !== null && Number.isFinite(x));
  const yMin = Math.min(0, ...finite);
  const yMax = Math.max(0, ...finite) || (yMin < 0 ? 0 : 1);
  const y = (x: number) => H - PAD.b - ((H - PAD.t - PAD.b) * (x - yMin)) / (yMax - yMin || 1);
  const step = (W - PAD.l - PAD.r) / Math.max(1, labels.length);
  const bars = values.map((x, i) => {
    if (x === null || !Number.isFinite(x)) return '';
    const top = Math.min(y(x), y(0));
    return `<rect class="bar" x="${PAD.l + step * i + step * 0.15}" y="${top}" width="${step * 0.7}" height="${Math.max(0.5, Math.abs(y(x) - y(0)))}"><title>${esc(labels[i] as string)}: ${fmt(x)}</title></rect>`;
  });
  return figure(title, `${axes(yMin, yMax, labels)}${bars.join('')}`);
}

/** A line with points, one per label. */
export function lineChart(title: string, labels: string[], values: number[]): string {
  const yMax = Math.max(...values.filter(Number.isFinite), 0) || 1;
  const y = (x: number) => H - PAD.b - ((H - PAD.t - PAD.b) * x) / yMax;
  const step = (W - PAD.l - PAD.r) / Math.max(1, labels.length);
  const pts = values.map((x, i) => [PAD.l + step * (i + 0.5), y(x)] as const);
  const path = pts.map(([px, py], i) => `${i === 0 ? 'M' : 'L'}${px.toFixed(1)},${py.toFixed(1)}`).join(' ');
  const dots = pts
    .map(
      ([px, py], i) =>
        `<circle class="dot" cx="${px}" cy="${py}" r="3.5"><title>${esc(labels[i] as string)}: ${fmt(values[i] as number)}</title></circle>`,
    )
    .join('');
  return figure(title, `${axes(0, yMax, labels)}<path class="line" d="${path}"/>${dots}`);
}

/** The pairwise cosine matrix, blue for negative (deviations that cancel), red for positive. */
export function heatmap(title: string, labels: string[], m: (number | null)[][]): string {
  const n = labels.length;
  const size = Math.min(28, Math.floor(360 / Math.max(1, n)));
  const off = 72;
  const cells: string[] = [];
  m.forEach((row, i) =>
    row.forEach((x, j) => {
      const c = x === null ? '#ddd' : x < 0 ? `rgba(33,102,172,${Math.abs(x)})` : `rgba(178,24,43,${x})`;
      cells.push(
        `<rect class="cell" x="${off + j * size}" y="${off + i * size}" width="${size}" height="${size}" fill="${c}"><title>${esc(labels[i] as string)} vs ${esc(labels[j] as string)}: ${fmt(x)}</title></rect>`,
      );
    }),
  );
  const names = labels
    .map(
      (l, i) =>
        `<text x="${off - 6}" y="${off + i * size + size * 0.65}" text-anchor="end">${esc(l)}</text><text transform="translate(${off + i * size + size * 0.65},${off - 6}) rotate(-60)">${esc(l)}</text>`,
    )
    .join('');
  const side = off + n * size + 16;
  return `<figure><figcaption>${esc(title)}</figcaption><svg xmlns="http://www.w3.org/2000/svg" class="chart" width="${side}" height="${side}" viewBox="0 0 ${side} ${side}">${cells.join('')}${names}</svg></figure>`;
}

function figure(title: string, body: string): string {
  return `<figure><figcaption>${esc(title)}</figcaption><svg xmlns="http://www.w3.org/2000/svg" class="chart" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">${body}</svg></figure>`;
}

function row(name: string, s: DeviationStats, extra = ''): string {
  return `<tr><td>${esc(name)}</td>${extra}<td>${s.elements}</td><td>${fmt(s.removedShare)}</td><td>${fmt(s.meanPairCosine)}</td><td>${fmt(Math.max(...s.deviationNorm))}</td><td>${fmt(s.newestNorm)}</td></tr>`;
}

/**
 * A self-contained HTML page of an analysis: SVG charts and tables, no script, nothing fetched
 * (its Content-Security-Policy is `default-src 'none'`).
 *
 * @example
 * ```ts
 * import { writeFile } from 'node:fs/promises';
 * import { analyze, reportHtml } from 'pma';
 * const html = reportHtml(await analyze({ inputs: 'runs/exp7', last: 4 }));
 * await writeFile('exp7-pma.html', html);
 * console.log(`exp7-pma.html: ${html.length} characters`);
 * ```
 */
export function reportHtml(r: AnalyzeResult): string {
  const labels = r.checkpoints.map((c) => (c.step === null ? c.name : String(c.step)));
  const pairs = r.checkpoints.slice(1).map((_, i) => `${labels[i]}→${labels[i + 1]}`);
  const layerNames = r.layers.map((l) => l.layer);
  const top = [...r.tensors].sort((a, b) => (b.removedShare ?? 0) - (a.removedShare ?? 0)).slice(0, 50);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>pma analyze: ${r.checkpoints.length} checkpoints</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:2em}
figure{margin:1em 0}figcaption{font-weight:600;margin-bottom:.3em}
svg text{font-size:11px;fill:#444}.grid{stroke:#e4e4e4}.bar{fill:#4a7fb5}.line{fill:none;stroke:#b5524a;stroke-width:2}.dot{fill:#b5524a}
table{border-collapse:collapse;font-size:13px}td,th{padding:.2em .6em;border-bottom:1px solid #eee;text-align:right}td:first-child,th:first-child{text-align:left}
.note{color:#555}
</style></head><body>
<h1>How the checkpoints deviate from their average</h1>
<p class="note">${r.checkpoints.length} checkpoints, oldest first: ${r.checkpoints.map((c) => esc(c.path)).join(', ')}.
The PMA paper explains why averaging works by checkpoints oscillating around a basin with complementary deviations:
deviations from the mean whose pairwise cosines are negative cancel in the average.</p>
<h2>The whole model</h2>
<p>The average changes the newest checkpoint by <b>${fmt(r.overall.removedShare)}</b> of its norm (‖θ<sub>newest</sub> − mean‖ / ‖θ<sub>newest</sub>‖);
the mean pairwise cosine of the deviations is <b>${fmt(r.overall.meanPairCosine)}</b>.</p>
${lineChart('Deviation from the mean, ‖θᵢ − mean‖, per checkpoint', labels, r.overall.deviationNorm)}
${heatmap('Pairwise cosine of the deviations (blue: they cancel)', labels, r.overall.cosine)}
${barChart('Distance between consecutive checkpoints, ‖θᵢ₊₁ − θᵢ‖', pairs, r.overall.consecutive)}
<h2>Per layer</h2>
${barChart(
  'Share of the newest checkpoint’s norm the average changes, per layer',
  layerNames,
  r.layers.map((l) => l.removedShare),
)}
${barChart(
  'Mean pairwise cosine of the deviations, per layer',
  layerNames,
  r.layers.map((l) => l.meanPairCosine),
)}
<table><thead><tr><th>layer</th><th>tensors</th><th>elements</th><th>share changed</th><th>mean cosine</th><th>largest deviation</th><th>‖θ newest‖</th></tr></thead><tbody>
${r.layers.map((l) => row(l.layer, l, `<td>${l.tensors}</td>`)).join('\n')}
</tbody></table>
<h2>Tensors the average changes most</h2>
<table><thead><tr><th>tensor</th><th>elements</th><th>share changed</th><th>mean cosine</th><th>largest deviation</th><th>‖θ newest‖</th></tr></thead><tbody>
${top.map((t) => row(t.name, t)).join('\n')}
</tbody></table>
<p class="note">Made by pma analyze; the numbers are in <code>--json</code>.</p>
</body></html>
`;
}
