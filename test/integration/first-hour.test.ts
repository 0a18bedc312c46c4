import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { inspect, merge, watchRun, type WatchMerge } from '../../src/index.js';
import { CLI, pma } from '../helpers/cli.js';
import { rejected } from '../helpers/errors.js';
import { writeCheckpoint, writeSafetensors, type RawTensor, type TensorSpec } from '../helpers/safetensors.js';
import { scratch } from '../helpers/scratch.js';

// The first hour of a new user with a Hugging Face Trainer run (issue 12): each situation built
// as the Trainer leaves it, each expectation checked through the CLI or the library.
const { tmp, out } = scratch('pma-first-hour-');
const SPECS: TensorSpec[] = [
  { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [256, 64] },
  { name: 'model.layers.0.mlp.up_proj.weight', dtype: 'BF16', shape: [128, 64] },
  { name: 'model.norm.weight', dtype: 'F32', shape: [64] },
];
const STEPS = [500, 1000, 1500, 2000];
const run = join(tmp, 'run');
const ck = (s: number, dir = run) => join(dir, `checkpoint-${s}`);
const CONFIG = { architectures: ['LlamaForCausalLM'], model_type: 'llama', rope_theta: 10000, torch_dtype: 'bfloat16' };

/** A checkpoint as the Trainer saves it: weights, config, tokenizer, and training state beside them. */
function trainerCheckpoint(
  dir: string,
  seed: number,
  config: Record<string, unknown> = CONFIG,
): Map<string, RawTensor> {
  const tensors = writeCheckpoint(dir, SPECS, seed);
  writeFileSync(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  for (const f of ['scheduler.pt', 'rng_state.pth', 'training_args.bin']) writeFileSync(join(dir, f), 'state');
  writeFileSync(
    join(dir, 'trainer_state.json'),
    JSON.stringify({ global_step: seed, num_input_tokens_seen: seed * 1000 }),
  );
  return tensors;
}

/** A run directory as the Trainer leaves it after trainer.save_model(). */
function trainerRun(dir: string): void {
  for (const s of STEPS) trainerCheckpoint(ck(s, dir), s);
  // The final model at the top level, a tensorboard folder and a checkpoint still being saved.
  trainerCheckpoint(dir, 9999);
  mkdirSync(join(dir, 'runs', 'Nov30_06-00-00_host'), { recursive: true });
  writeFileSync(join(dir, 'runs', 'Nov30_06-00-00_host', 'events.out.tfevents.1'), 'tb');
  mkdirSync(join(dir, 'tmp-checkpoint-2500'));
  writeFileSync(join(dir, 'tmp-checkpoint-2500', 'model.safetensors'), 'half');
}

const cliJson = <T>(args: string[]): { status: number; json: T; stderr: string } => {
  const r = pma(args);
  return { status: r.status, json: JSON.parse(r.stdout) as T, stderr: r.stderr };
};
const same = (a: string, b: string, name = 'model.safetensors') =>
  readFileSync(join(a, name)).equals(readFileSync(join(b, name)));

beforeAll(() => trainerRun(run));

describe('1. a run directory that also holds the final model', () => {
  it('merges the checkpoint-* folders and lists the top-level model as the final model, left out', () => {
    const r = pma(['merge', run, '--last', '3', '--out', out()]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^merged 3 checkpoint\(s\)/);
    expect(r.stderr).toContain(
      `skipped ${join(run, 'model.safetensors')}: the final model saved at the run's top level`,
    );
    expect(r.stderr).toContain(ck(1000));
    expect(r.stderr).toContain(`skipped ${join(run, 'tmp-checkpoint-2500')}: a temporary directory`);
  });

  it('inspect lists the four checkpoints; analyze and watch work on the run', async () => {
    const r = await inspect(run);
    expect(r.checkpoints.map((c) => c.step)).toEqual(STEPS);
    expect(r.skipped[0]).toEqual({
      path: join(run, 'model.safetensors'),
      reason: expect.stringContaining('the final model') as string,
    });
    const a = pma(['analyze', run, '--last', '3', '--json']);
    expect(a.status).toBe(0);
    const ac = new AbortController();
    const seen: WatchMerge[] = [];
    for await (const m of watchRun({ run, out: out(), last: 2, settleMs: 0, pollMs: 20, signal: ac.signal })) {
      seen.push(m);
      ac.abort();
    }
    expect(seen.map((m) => m.step)).toEqual([2000]);
  });

  it('a directory that is one checkpoint (no step-named checkpoints inside) is still merged as itself', () => {
    const r = pma(['merge', ck(500), '--out', out(), '--json']);
    expect(r.status).toBe(0);
    expect((JSON.parse(r.stdout) as { checkpoints: { path: string }[] }).checkpoints[0]?.path).toBe(ck(500));
  });
});

describe('2. fewer checkpoints than asked for', () => {
  it('says "10 asked, 4 found" in the plan, in --json and on stderr even with --quiet', () => {
    const dry = cliJson<{ warnings: string[] }>(['merge', run, '--last', '10', '--dry-run', '--json']);
    expect(dry.json.warnings).toContain('asked for the last 10 checkpoints, 4 found');
    const r = pma(['merge', run, '--last', '10', '--out', out(), '--quiet', '--json']);
    expect(r.status).toBe(0);
    expect(r.stderr).toContain('warning: asked for the last 10 checkpoints, 4 found');
    expect((JSON.parse(r.stdout) as { warnings: string[] }).warnings).toHaveLength(1);
    const a = pma(['analyze', run, '--last', '10', '--json']);
    expect(a.stderr).toBe('warning: asked for the last 10 checkpoints, 4 found\n');
    expect((JSON.parse(a.stdout) as { warnings: string[] }).warnings).toHaveLength(1);
  });

  it('warns that a merge of one checkpoint is a copy', () => {
    const r = pma(['merge', run, '--last', '1', '--out', out(), '-q']);
    expect(r.status).toBe(0);
    expect(r.stderr).toContain(
      'warning: only one checkpoint is selected (checkpoint-2000): the output is a copy of it',
    );
    expect(pma(['merge', run, '--last', '2', '--dry-run']).stdout).not.toContain('warning');
  });
});

describe('3. pma watch with --out inside the run', () => {
  it('never reads its own merges as checkpoints; inspect of the run works', async () => {
    const r2 = join(tmp, 'run-watched');
    for (const s of [500, 1000, 1500]) cpSync(ck(s), ck(s, r2), { recursive: true });
    const ac = new AbortController();
    const seen: WatchMerge[] = [];
    const watching = (async () => {
      for await (const m of watchRun({ run: r2, out: r2, last: 3, settleMs: 0, pollMs: 20, signal: ac.signal })) {
        seen.push(m);
        if (seen.length === 1) cpSync(ck(2000), ck(2000, r2), { recursive: true });
        else ac.abort();
      }
    })();
    await watching;
    expect(seen.map((m) => m.step)).toEqual([1500, 2000]);
    expect(seen[1]?.result.plan.checkpoints.map((c) => c.step)).toEqual([1000, 1500, 2000]);
    const r = pma(['inspect', r2]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`skipped ${join(r2, 'merged-step-1500')}: a merge written by pma (it has a pma.json)`);
    expect(r.stdout).toContain('4 checkpoint(s)');
  });
});

describe('4. --force replaces only what pma wrote', () => {
  it('refuses a training checkpoint that was not selected, naming it, and leaves it whole', () => {
    const before = readdirSync(ck(500)).sort();
    const r = pma(['merge', run, '--last', '2', '--out', ck(500), '--force']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(
      `pma: error [E_OUTPUT]: output ${ck(500)} exists and was not written by pma (it has no pma.json); --force replaces only`,
    );
    expect(readdirSync(ck(500)).sort()).toEqual(before);
    const file = join(tmp, 'a-file');
    writeFileSync(file, 'x');
    expect(pma(['merge', run, '--last', '2', '--out', file, '--force']).stderr).toContain('is a file');
    expect(readFileSync(file, 'utf8')).toBe('x');
  });

  it('replaces an empty directory and an earlier merge', () => {
    const o = out();
    mkdirSync(o);
    expect(pma(['merge', run, '--last', '2', '--out', o, '--force']).status).toBe(0);
    expect(pma(['merge', run, '--last', '3', '--out', o, '--force']).status).toBe(0);
    expect((JSON.parse(readFileSync(join(o, 'pma.json'), 'utf8')) as { inputs: unknown[] }).inputs).toHaveLength(3);
  });
});

describe('5. recovering from NaN/Inf follows the advice given', () => {
  const spiky = join(tmp, 'spiky');
  beforeAll(() => {
    for (const s of STEPS) {
      const tensors = trainerCheckpoint(ck(s, spiky), s);
      if (s !== 1500) continue;
      const t = tensors.get('model.layers.0.mlp.up_proj.weight') as RawTensor;
      new DataView(t.data.buffer, t.data.byteOffset).setUint16(2 * 4000, 0x7fc1, true); // one NaN (bf16), in a chunk after the first few
      writeSafetensors(join(ck(s, spiky), 'model.safetensors'), [...tensors.values()]);
    }
  });

  it('E_NONFINITE, then the same command with --on-nonfinite skip-checkpoint succeeds; no handle is leaked', () => {
    const o = out();
    const args = ['merge', spiky, '--out', o, '--chunk-size', '20KiB'];
    const first = pma(args);
    expect(first.status).toBe(2);
    expect(first.stderr).toMatch(/E_NONFINITE.*1 in model\.layers\.0\.mlp\.up_proj\.weight of .*checkpoint-1500/);
    expect(first.stderr).toContain('the same command with --on-nonfinite skip-checkpoint or warn takes them up');
    expect(first.stderr).not.toContain('--resume to finish');
    // --resume alone meets the same values: the same error, not a different one.
    expect(pma([...args, '--resume']).stderr).toContain('[E_NONFINITE]');
    const skip = pma([...args, '--on-nonfinite', 'skip-checkpoint', '--json']);
    expect(skip.stderr).not.toMatch(/Closing file descriptor|DEP0137/);
    expect(skip.status).toBe(0);
    const r = JSON.parse(skip.stdout) as { checkpoints: { step: number }[]; leftOut: { path: string }[] };
    expect(r.checkpoints.map((c) => c.step)).toEqual([500, 1000, 2000]);
    expect(r.leftOut.map((l) => l.path)).toEqual([ck(1500, spiky)]);
    expect(existsSync(`${o}.partial`)).toBe(false);
    const clean = out();
    expect(pma(['merge', ...[500, 1000, 2000].map((s) => ck(s, spiky)), '--out', clean]).status).toBe(0);
    expect(same(o, clean)).toBe(true);
  });

  it('--on-nonfinite warn after the stop takes up the chunks already merged', async () => {
    const o = out();
    expect(pma(['merge', spiky, '--out', o, '--chunk-size', '20KiB']).status).toBe(2);
    const r = await merge({ inputs: spiky, out: o, chunkSize: '20KiB', onNonfinite: 'warn' });
    expect(r.resumedChunks).toBeGreaterThan(0);
    expect(r.nonfinite).toEqual([
      { tensor: 'model.layers.0.mlp.up_proj.weight', checkpoint: ck(1500, spiky), step: 1500, count: 1 },
    ]);
  });

  it('a merge stopped before any chunk is written leaves nothing to resume', async () => {
    const o = out();
    const ac = new AbortController();
    const err = await rejected(
      merge({
        inputs: run,
        out: o,
        signal: ac.signal,
        onProgress: () => {},
        onPlan: () => queueMicrotask(() => ac.abort()),
      }),
    );
    expect(err.code).toBe('E_ABORTED');
    expect(existsSync(`${o}.partial`)).toBe(false);
    expect(pma(['merge', run, '--out', o, '-q']).status).toBe(0);
  });
});

describe('6. output piped into head', () => {
  it('ends quietly with the command status when the reader goes away', () => {
    const big = join(tmp, 'big');
    const specs = Array.from({ length: 1500 }, (_, i) => ({
      name: `model.layers.${i}.self_attn.q_proj.weight`,
      dtype: 'F32',
      shape: [2],
    }));
    for (const s of [1, 2]) writeCheckpoint(ck(s, big), specs, s);
    for (const args of [
      ['inspect', big, '--tensors'],
      ['inspect', big, '--tensors', '--json'],
      ['merge', big, '--dry-run', '--json'],
      ['analyze', big, '--json'],
    ]) {
      const r = spawnSync(
        'bash',
        [
          '-c',
          `"${process.execPath}" "${CLI}" "$@" | head -c 100 >/dev/null; echo "\${PIPESTATUS[0]}"`,
          'pma',
          ...args,
        ],
        { encoding: 'utf8' },
      );
      expect(r.stderr, args.join(' ')).not.toMatch(/EPIPE|Error|error/);
      expect(r.stdout.trim(), args.join(' ')).toBe('0');
    }
  });
});

describe('7. --quiet', () => {
  it('hides the listing, never the NaN/Inf warnings', () => {
    const r = pma(['merge', join(tmp, 'spiky'), '--out', out(), '--on-nonfinite', 'warn', '-q']);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/^warning: 1 NaN\/Inf in model\.layers\.0\.mlp\.up_proj\.weight of .*checkpoint-1500/m);
    expect(r.stderr).not.toContain('merging');
  });
});

describe('8. config.json that differs between the checkpoints', () => {
  const mixed = join(tmp, 'mixed');
  const mistral = { ...CONFIG, architectures: ['MistralForCausalLM'], model_type: 'mistral' };

  it('warns naming the keys and checkpoints; refuses another model_type unless --allow-config-mismatch', () => {
    trainerCheckpoint(ck(1, mixed), 1);
    trainerCheckpoint(ck(2, mixed), 2, { ...CONFIG, rope_theta: 500000 });
    const w = pma(['merge', mixed, '--out', out(), '-q']);
    expect(w.status).toBe(0);
    expect(w.stderr).toContain(
      "warning: config.json differs between the merged checkpoints (checkpoint-2's is copied): rope_theta: 10000 in checkpoint-1; 500000 in checkpoint-2",
    );
    trainerCheckpoint(ck(3, mixed), 3, mistral);
    const o = out();
    const refused = pma(['merge', mixed, '--out', o]);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain(
      'pma: error [E_MISMATCH]: the checkpoints are of different models: config.json architectures: ["LlamaForCausalLM"] in checkpoint-1, checkpoint-2; ["MistralForCausalLM"] in checkpoint-3; model_type: "llama" in checkpoint-1, checkpoint-2; "mistral" in checkpoint-3; pass --allow-config-mismatch',
    );
    expect(existsSync(o)).toBe(false);
    const allowed = pma(['merge', mixed, '--out', o, '--allow-config-mismatch', '-q']);
    expect(allowed.status).toBe(0);
    expect(allowed.stderr).toContain('model_type: "llama" in checkpoint-1, checkpoint-2; "mistral" in checkpoint-3');
  });

  it('a config that does not name its model is no evidence of another one: a warning only', () => {
    const quiet = join(tmp, 'unnamed');
    trainerCheckpoint(ck(1, quiet), 1);
    trainerCheckpoint(ck(2, quiet), 2, { rope_theta: 10000 });
    const r = pma(['merge', quiet, '--out', out(), '-q']);
    expect(r.status).toBe(0);
    expect(r.stderr).toContain('model_type: "llama" in checkpoint-1; (absent) in checkpoint-2');
  });
});

describe('9. --dtype sets torch_dtype in the copied config.json', () => {
  it('f32 writes float32 (and dtype, the newer key, when present); keep copies the file as it is', () => {
    const d = join(tmp, 'dtypes');
    trainerCheckpoint(ck(1, d), 1, { ...CONFIG, dtype: 'bfloat16', text_config: { torch_dtype: 'bfloat16' } });
    trainerCheckpoint(ck(2, d), 2, { ...CONFIG, dtype: 'bfloat16', text_config: { torch_dtype: 'bfloat16' } });
    const o = out();
    expect(pma(['merge', d, '--dtype', 'f32', '--out', o]).status).toBe(0);
    const cfg = JSON.parse(readFileSync(join(o, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(cfg).toMatchObject({ torch_dtype: 'float32', dtype: 'float32', text_config: { torch_dtype: 'float32' } });
    expect(pma(['verify', o]).status).toBe(0);
    const k = out();
    expect(pma(['merge', d, '--out', k]).status).toBe(0);
    expect(same(k, ck(2, d), 'config.json')).toBe(true);
  });
});

describe('10. --resume and --chunk-size', () => {
  it('resumes a partial made with another --chunk-size (same bytes); names the argument that differs', async () => {
    const o = out();
    const ac = new AbortController();
    const err = await rejected(
      merge({ inputs: run, out: o, chunkSize: '20KiB', threads: 1, signal: ac.signal, onProgress: () => ac.abort() }),
    );
    expect(err.code).toBe('E_ABORTED');
    const changed = pma(['merge', run, '--out', o, '--resume', '--dtype', 'f32']);
    expect(changed.status).toBe(2);
    expect(changed.stderr).toContain('was started with different arguments: --dtype (keep then, f32 now)');
    const r = pma(['merge', run, '--out', o, '--resume', '--chunk-size', '1MiB', '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { resumedChunks: number }).resumedChunks).toBeGreaterThan(0);
    const fresh = out();
    await merge({ inputs: run, out: fresh });
    expect(same(o, fresh)).toBe(true);
  });
});

describe('11. smaller things', () => {
  it('--to-step help; flags, not library option names, in CLI errors', () => {
    expect(pma(['merge', '--help']).stdout).toContain('--to-step S                  keep checkpoints with step <= S');
    expect(pma(['recommend', '--total-params', 'abc']).stderr).toContain('invalid --total-params: expected');
    const r = pma(['merge', run, '--out', join(tmp, 'x'), '--weights', '1,x']);
    expect(r.stderr).toContain('invalid --weights[1]: expected a finite number');
    expect(pma(['merge', run, '--last', '2', '--out', ck(2000), '--force']).stderr).not.toContain('force: true');
  });

  it('verify of a missing path; --out where nothing can be created', () => {
    const v = pma(['verify', join(tmp, 'nosuch')]);
    expect(v.stderr).toBe(`pma: error [E_INPUT]: ${join(tmp, 'nosuch')} does not exist\n`);
    const p = pma(['merge', run, '--out', '/proc/nope', '-q']);
    expect(p.status).toBe(2);
    expect(p.stderr).toMatch(/^pma: error \[E_INPUT\]: cannot create output in \/proc: ENOENT: no such file/);
    expect(p.stderr).not.toContain('ENOENT: ENOENT');
  });

  it('pma.json: input and output dtypes, tokens of a token-window merge, a trailing newline', () => {
    const o = out();
    expect(pma(['merge', run, '--window', '1M', '--out', o, '--dtype', 'f32']).status).toBe(0);
    const text = readFileSync(join(o, 'pma.json'), 'utf8');
    expect(text.endsWith('}\n')).toBe(true);
    const rec = JSON.parse(text) as Record<string, unknown>;
    expect(rec.inputDtypes).toEqual({ BF16: 2, F32: 1 });
    expect(rec.outputDtypes).toEqual({ F32: 3 });
    expect(rec.inputs).toEqual([
      { path: ck(1500), step: 1500, tokens: 1_500_000 },
      { path: ck(2000), step: 2000, tokens: 2_000_000 },
    ]);
  });

  it('inspect exits 2 on a mismatch, and lists a truncated checkpoint among the others', () => {
    const d = join(tmp, 'damaged');
    for (const s of STEPS) cpSync(ck(s), ck(s, d), { recursive: true });
    truncateSync(join(ck(1000, d), 'model.safetensors'), 100);
    const r = pma(['inspect', d]);
    expect(r.status).toBe(2);
    expect(r.stdout).toMatch(/1000 {2}checkpoint-1000 {2}UNREADABLE: .*model\.safetensors: /);
    expect(r.stdout).toContain('checkpoint-2000  1 file  3 tensors');
    rmSync(ck(1000, d), { recursive: true });
    writeCheckpoint(ck(1000, d), [...SPECS, { name: 'extra', dtype: 'F32', shape: [1] }], 1);
    const m = pma(['inspect', d]);
    expect(m.status).toBe(2);
    expect(m.stdout).toContain('MISMATCH: tensor "extra"');
    expect(pma(['inspect', run]).status).toBe(0);
  });

  it('with --json, a failure is a JSON object on stdout too, with its code', () => {
    const r = pma(['merge', join(tmp, 'nosuch'), '--out', out(), '--json']);
    expect(r.status).toBe(2);
    expect(JSON.parse(r.stdout)).toEqual({
      error: { code: 'E_INPUT', message: `${join(tmp, 'nosuch')}: does not exist`, file: join(tmp, 'nosuch') },
      exitStatus: 2,
    });
    const u = JSON.parse(pma(['analyze', run, '--last', '0', '--json']).stdout) as { error: unknown };
    expect(u.error).toMatchObject({
      code: 'E_USAGE',
      option: 'last',
      message: 'invalid --last: expected an integer >= 1, got "0"',
    });
  });

  it('the README says how to run pma outside the clone', () => {
    const readme = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
    expect(readme).toContain('npm install -g');
    expect(readme).toContain('npx pma');
  });
});
