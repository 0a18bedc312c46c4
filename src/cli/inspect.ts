import { inspect, type InspectResult, type InspectedCheckpoint } from '../inspect.js';
import type { Command } from './command.js';
import { JSON_FLAG } from './common-flags.js';
import type { CommandSpec } from './flags.js';
import { formatBytes } from './format.js';

export const INSPECT_SPEC: CommandSpec = {
  name: 'inspect',
  usage: '<run-dir | checkpoint...> [--tensors] [--json]',
  summary: 'list checkpoints and tensors',
  about: `Lists the checkpoints found (ordered by step), their files, tensor counts, dtypes and sizes,
and whether they agree on tensor names, shapes and dtypes. Reads headers only. A checkpoint that
cannot be read is listed as UNREADABLE with the reason.

Exit status: 0 the checkpoints agree, 2 they disagree or one cannot be read (as pma merge would
refuse them).`,
  positionals: {
    min: 1,
    max: Infinity,
    wrong: 'pma inspect needs a run directory or checkpoints (see pma inspect --help)',
  },
  groups: [
    {
      title: 'Options',
      flags: [{ name: 'tensors', type: 'boolean', help: "also list the newest checkpoint's tensors" }, JSON_FLAG],
    },
  ],
  examples: ['pma inspect runs/exp7', 'pma inspect runs/exp7/checkpoint-7000 runs/exp7/checkpoint-8000 --tensors'],
};

const files = (c: InspectedCheckpoint) =>
  c.layout === 'dcp' ? `DCP, ${c.files} file(s)` : c.layout === 'sharded' ? `${c.files} shards` : '1 file';

type Fp8Entry = NonNullable<InspectResult['quantization']>['fp8'][number];

/** "scale x_scale_inv F32, 128x128 blocks": how an FP8 tensor is scaled. */
function fp8Pairing(f: Fp8Entry): string {
  if (f.scale === null) return 'no scale (scale 1)';
  const how =
    f.scaling === 'block' ? `${f.block[0]}x${f.block[1]} blocks` : f.scaling === 'channel' ? 'per row' : 'per tensor';
  return `scale ${f.scale} ${f.scaleDtype}, ${how}`;
}

/** The quantization summary: FP8 tensors by how they are scaled, or the scheme a merge refuses. */
function quantizationLines(q: NonNullable<InspectResult['quantization']>): string[] {
  const lines = [`quantization: ${q.method ?? 'none declared in config.json'}`];
  const kinds = new Map<string, number>();
  for (const f of q.fp8) {
    const k = `${f.dtype}, ${fp8Pairing(f).replace(/^scale \S+ /, '')}`;
    kinds.set(k, (kinds.get(k) ?? 0) + 1);
  }
  for (const [k, n] of kinds) lines.push(`  ${n} FP8 tensor(s) averaged: ${k}`);
  if (q.unknown) {
    lines.push(
      `QUANTIZED with ${q.unknown.scheme} (${q.unknown.why}): ${q.unknown.tensors.length} tensor(s) pma cannot average; a merge is refused unless --copy-quantized`,
    );
  }
  return lines;
}

export const inspectCommand: Command = {
  spec: INSPECT_SPEC,
  async run({ flags, positionals }, io) {
    const r = await inspect(positionals);
    // Exit 2 when a merge of these checkpoints would be refused, as pma merge would exit.
    const status = r.ok ? 0 : 2;
    if (flags.json) {
      io.out(`${JSON.stringify(r, null, 2)}\n`);
      return status;
    }
    const lines: string[] = [];
    lines.push(
      `${r.checkpoints.length} checkpoint(s)${r.source === 'run' ? ` in ${positionals[0]}` : ''}, oldest first:`,
    );
    for (const c of r.checkpoints) {
      const dt = Object.entries(c.dtypes)
        .map(([d, n]) => `${d}x${n}`)
        .join(' ');
      const step = String(c.step ?? '-').padStart(10);
      if (c.problem !== null) lines.push(`  ${step}  ${c.name}  UNREADABLE: ${c.problem}`);
      else
        lines.push(
          `  ${step}  ${c.name}  ${files(c)}  ${c.tensors} tensors  ${formatBytes(c.bytes)}  ${dt}${c.others > 0 ? `  (+${c.others} items not averaged)` : ''}`,
        );
    }
    for (const s of r.skipped) lines.push(`  skipped ${s.path}: ${s.reason}`);
    const unreadable = r.checkpoints.filter((c) => c.problem !== null).length;
    if (r.mismatch !== null) lines.push(`MISMATCH: ${r.mismatch}`);
    else
      lines.push(
        unreadable === 0
          ? 'all checkpoints hold the same tensors, shapes and dtypes'
          : `the ${r.checkpoints.length - unreadable} readable checkpoint(s) hold the same tensors, shapes and dtypes`,
      );
    if (unreadable > 0) lines.push(`${unreadable} checkpoint(s) cannot be read: a merge of them would fail`);
    const q = r.quantization;
    const fp8 = new Map((q?.fp8 ?? []).map((f) => [f.name, f]));
    if (q) lines.push(...quantizationLines(q));
    if (flags.tensors) {
      lines.push('tensors of the newest checkpoint:');
      for (const t of r.tensors) {
        const f = fp8.get(t.name);
        lines.push(
          `  ${t.name}  ${t.dtype}  [${t.shape.join(', ')}]  ${formatBytes(t.bytes)}${f ? `  ${fp8Pairing(f)}` : ''}`,
        );
      }
    }
    io.out(`${lines.join('\n')}\n`);
    return status;
  },
};
