import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { PmaError } from '../errors.js';
import { merge } from '../merge/merge.js';
import { native } from '../native.js';
import { readHeader } from '../safetensors/header.js';
import { DEMO_STEPS, demoTensors, demoValue, writeDemoRun } from '../synthetic/demo-run.js';
import { exists } from '../util/fs.js';
import { runCommand, type Command } from './command.js';
import type { CommandSpec } from './flags.js';
import { inspectCommand } from './inspect.js';
import type { Io } from './io.js';
import { mergeCommand } from './merge.js';
import { verifyCommand } from './verify.js';

export const DEMO_SPEC: CommandSpec = {
  name: 'demo',
  usage: '[DIR]',
  summary: 'write a tiny training run, merge it and check the result',
  about: `Writes a tiny training run (5 checkpoints of a small MoE-shaped model, the newest sharded, each
with a config.json and training state) into DIR/run, then inspects it, merges the 4 newest into
DIR/merged, verifies the output, and checks it: every tensor with its dtype and shape, the same
bytes from the scalar kernel on one thread with tiny chunks, and a tensor against a plain float64
average. Without DIR it works in a temporary directory and removes it at the end; with DIR
(which must not exist yet) the files stay, to try other pma commands on.`,
  positionals: { min: 0, max: 1, wrong: 'pma demo takes at most one directory (see pma demo --help)' },
  groups: [],
  examples: [
    'pma demo',
    'pma demo /tmp/pma-try && pma merge /tmp/pma-try/run --last 2 --method wma --out /tmp/pma-try/wma',
  ],
};

function check(io: Io, ok: boolean, what: string): void {
  if (!ok) throw new PmaError('E_INTERNAL', `demo check failed: ${what}`);
  io.out(`  ok  ${what}\n`);
}

export const demoCommand: Command = {
  spec: DEMO_SPEC,
  async run({ positionals }, io) {
    const given = positionals[0];
    if (given !== undefined && (await exists(given)))
      throw new PmaError('E_OUTPUT', `${given} already exists; pma demo writes into a new directory`, { file: given });
    const root = given === undefined ? mkdtempSync(join(tmpdir(), 'pma-demo-')) : resolve(given);
    try {
      const run = join(root, 'run');
      writeDemoRun(run);
      io.out(`made a tiny run of ${DEMO_STEPS.length} checkpoints in ${run}\n\n$ pma inspect ${run}\n`);
      if ((await runCommand(inspectCommand, [run], io)) !== 0) return 1;
      const out = join(root, 'merged');
      io.out(`\n$ pma merge ${run} --last 4 --out ${out}\n`);
      if ((await runCommand(mergeCommand, [run, '--last', '4', '--out', out], io)) !== 0) return 1;
      io.out(`\n$ pma verify ${out}\n`);
      if ((await runCommand(verifyCommand, [out], io)) !== 0) return 1;

      io.out('\nchecking:\n');
      const h = await readHeader(join(out, 'model.safetensors'));
      const want = demoTensors();
      const same = want.every((s) =>
        h.tensors.some((t) => t.name === s.name && t.dtype === s.dtype && t.shape.join() === s.shape.join()),
      );
      check(io, h.tensors.length === want.length && same, `${want.length} tensors with their dtypes and shapes`);
      const again = join(root, 'merged-scalar');
      await merge({ inputs: run, last: 4, out: again, kernel: 'scalar', threads: 1, chunkSize: 4096 });
      const a = readFileSync(join(out, 'model.safetensors'));
      const best = native().cpuFeatures().best;
      check(
        io,
        a.equals(readFileSync(join(again, 'model.safetensors'))),
        `same bytes from the scalar kernel on 1 thread with 4 KiB chunks as from ${best} on the default pool`,
      );
      rmSync(again, { recursive: true, force: true });
      const norm = h.tensors.find((x) => x.name === 'model.norm.weight');
      const spec = want.find((x) => x.name === 'model.norm.weight');
      let worst = 0;
      for (let i = 0; norm && spec && i < (spec.shape[0] as number); i++) {
        const mean = DEMO_STEPS.slice(-4).reduce((s, st) => s + Math.fround(demoValue(spec, st, i)), 0) / 4;
        worst = Math.max(
          worst,
          Math.abs(a.readFloatLE(h.dataStart + norm.begin + i * 4) - mean) / Math.max(Math.abs(mean), 1e-30),
        );
      }
      check(
        io,
        norm !== undefined && worst <= 2 ** -22,
        `model.norm.weight within ${worst.toExponential(1)} (relative) of a float64 average`,
      );
      io.out(`\ndemo done${given === undefined ? '' : `; the run and the merge are in ${root}`}\n`);
      return 0;
    } finally {
      if (given === undefined) rmSync(root, { recursive: true, force: true });
    }
  },
};
