import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { decayWeights, merge, plan as planMerge } from '../../src/index.js';
import { rejected } from '../helpers/errors.js';
import { pma } from '../helpers/cli.js';
import { mergeTensor } from '../helpers/reference.js';
import {
  readSafetensors,
  writeCheckpoint,
  writeSafetensors,
  type RawTensor,
  type TensorSpec,
} from '../helpers/safetensors.js';
import { scratch } from '../helpers/scratch.js';

// Issue 6: what a training run needs on top of the merge engine, on generated runs.
const { tmp, out } = scratch('pma-training-loop-');

const SPECS: TensorSpec[] = [
  { name: 'embed.weight', dtype: 'BF16', shape: [97, 33] },
  { name: 'layers.0.weight', dtype: 'F32', shape: [301] },
  { name: 'layers.0.bias', dtype: 'F16', shape: [77] },
];
const run = join(tmp, 'run');
const STEPS = [1000, 2000, 3000, 4000, 5000, 6000];
const data = new Map<number, Map<string, RawTensor>>();

beforeAll(() => {
  for (const [i, s] of STEPS.entries()) data.set(s, writeCheckpoint(join(run, `checkpoint-${s}`), SPECS, 300 + i));
});

describe('--method decay', () => {
  it("merges with the schedule's weights, to the contract's bytes, and prints them", async () => {
    const o = out();
    const r = pma(['merge', run, '--last', '5', '--method', 'decay', '--schedule', 'cosine', '--out', o]);
    expect(r.status, r.stderr).toBe(0);
    const w = decayWeights('cosine', 5);
    expect(r.stderr).toContain('merging 5 checkpoint(s) with decay, cosine schedule');
    for (const [i, s] of STEPS.slice(1).entries())
      expect(r.stderr).toMatch(new RegExp(`${s}  weight ${(w[i] as number).toFixed(6)}  `));
    const w32 = w.map((x) => Math.fround(x / w.reduce((a, b) => a + b, 0)));
    const got = readSafetensors(join(o, 'model.safetensors'));
    for (const spec of SPECS) {
      const inputs = STEPS.slice(1).map((s) => (data.get(s)?.get(spec.name) as RawTensor).data);
      const want = mergeTensor(spec.dtype, spec.dtype, inputs, w32);
      expect(Buffer.from(got.tensors.get(spec.name)?.data ?? []).equals(Buffer.from(want))).toBe(true);
    }
    const meta = JSON.parse(readFileSync(join(o, 'pma.json'), 'utf8')) as {
      method: string;
      schedule: string;
      weights: number[];
    };
    expect([meta.method, meta.schedule]).toEqual(['decay', 'cosine']);
  });

  it('linear decay gives the same bytes as the simple average', async () => {
    const a = await merge({ inputs: run, out: out(), method: 'decay', schedule: 'linear' });
    const b = await merge({ inputs: run, out: out() });
    expect(readFileSync(join(a.out, 'model.safetensors')).equals(readFileSync(join(b.out, 'model.safetensors')))).toBe(
      true,
    );
  });
});

describe('windows in tokens', () => {
  // 4M tokens per step, a checkpoint every 1000 steps: 4B tokens apart, 4B to 40B.
  const tokenRun = join(tmp, 'token-run');
  const steps = Array.from({ length: 10 }, (_, i) => (i + 1) * 1000);
  beforeAll(() => {
    for (const [i, s] of steps.entries()) {
      writeCheckpoint(join(tokenRun, `checkpoint-${s}`), SPECS.slice(0, 1), 500 + i);
      writeFileSync(
        join(tokenRun, `checkpoint-${s}`, 'trainer_state.json'),
        JSON.stringify({ global_step: s, num_input_tokens_seen: s * 4e6 }),
      );
    }
  });
  const picked = async (o: Record<string, unknown>) => {
    const plan = await planMerge({ inputs: tokenRun, ...o });
    return {
      steps: plan.checkpoints.map((c) => c.step),
      tokens: plan.checkpoints.map((c) => c.tokens),
      notes: plan.notes,
    };
  };

  it('--interval 8B --window 40B: every other checkpoint, back from the newest, tokens from trainer_state.json', async () => {
    const r = await picked({ interval: '8B', window: '40B' });
    expect(r.steps).toEqual([2000, 4000, 6000, 8000, 10000]);
    expect(r.tokens).toEqual([8e9, 16e9, 24e9, 32e9, 40e9]);
    expect(r.notes).toContain('tokens per checkpoint from trainer_state.json num_input_tokens_seen');
  });

  it('reports gaps that do not match the interval instead of rounding them', async () => {
    const r = await picked({ interval: '6B', window: '20B' });
    expect(r.steps).toEqual([6000, 8000, 10000]);
    expect(r.notes).toContain(
      'checkpoints do not line up with the 6B interval; gaps kept: checkpoint-8000 -> checkpoint-10000: 8B; checkpoint-6000 -> checkpoint-8000: 8B',
    );
    expect(r.notes).toContain('the 20B window is not a whole number of 6B intervals');
  });

  it('--tokens-per-step overrides the files; the window alone keeps every checkpoint inside it; --last applies after', async () => {
    const r = await picked({ tokensPerStep: '2M', window: '8B' });
    expect(r.steps).toEqual([7000, 8000, 9000, 10000]);
    expect(r.notes).toContain('tokens per checkpoint from step x --tokens-per-step');
    expect((await picked({ tokensPerStep: 2e6, window: '8B', last: 2 })).steps).toEqual([9000, 10000]);
    expect((await picked({ window: '1T' })).notes).toContain('the run spans 36B of tokens, less than the 1T window');
  });

  it('reads consumed_tokens from config.json, and names the checkpoint that has no count', async () => {
    const bare = join(tmp, 'bare-run');
    for (const s of [100, 200, 300]) {
      writeCheckpoint(join(bare, `step-${s}`), SPECS.slice(0, 1), s);
      if (s !== 200)
        writeFileSync(
          join(bare, `step-${s}`, 'config.json'),
          JSON.stringify({ model_type: 'llama', consumed_tokens: s * 1e6 }),
        );
    }
    const err = await rejected(planMerge({ inputs: bare, window: '1B' }));
    expect(err.code).toBe('E_INPUT');
    expect(err.message).toBe(
      `cannot tell how many tokens ${join(bare, 'step-200')} had seen: give --tokens-per-step, or record num_input_tokens_seen in its trainer_state.json (or consumed_tokens in config.json or in the safetensors metadata)`,
    );
    writeFileSync(join(bare, 'step-200', 'config.json'), JSON.stringify({ consumed_tokens: 2e8 }));
    const plan = await planMerge({ inputs: bare, interval: '200M', window: '1B' });
    expect(plan.checkpoints.map((c) => c.step)).toEqual([100, 300]);
    expect(plan.notes[0]).toBe('tokens per checkpoint from config.json consumed_tokens');
    // The safetensors header's own metadata, where the config says nothing.
    const t = readSafetensors(join(bare, 'step-200', 'model.safetensors'));
    writeSafetensors(join(bare, 'step-200', 'model.safetensors'), [...t.tensors.values()], {
      format: 'pt',
      consumed_tokens: '200000000',
    });
    writeFileSync(join(bare, 'step-200', 'config.json'), '{}');
    const viaMetadata = await planMerge({ inputs: bare, interval: '100M', window: '1B' });
    expect(viaMetadata.checkpoints.map((c) => c.tokens)).toEqual([1e8, 2e8, 3e8]);
    expect(viaMetadata.notes[0]).toBe(
      'tokens per checkpoint from config.json consumed_tokens, safetensors metadata consumed_tokens',
    );
  });

  it('files sharing a directory take their tokens from their own metadata only; equal counts are refused', async () => {
    const flat = join(tmp, 'flat-run');
    const t = [...(data.get(1000) as Map<string, RawTensor>).values()];
    for (const s of [100, 200, 300])
      writeSafetensors(join(flat, `step-${s}.safetensors`), t, { format: 'pt', tokens: String(s * 1e7) });
    // A run-level config would give every file the same count: it is not used for them.
    writeFileSync(join(flat, 'config.json'), JSON.stringify({ consumed_tokens: 4e9 }));
    const plan = await planMerge({ inputs: flat, interval: '1B', window: '3B' });
    expect(plan.checkpoints.map((c) => c.tokens)).toEqual([1e9, 2e9, 3e9]);
    expect(plan.notes[0]).toBe('tokens per checkpoint from safetensors metadata tokens');
    writeSafetensors(join(flat, 'step-300.safetensors'), t, { format: 'pt', tokens: String(2e9) });
    const err = await rejected(planMerge({ inputs: flat, window: '3B' }));
    expect(err.message).toBe(
      `${join(flat, 'step-200.safetensors')} and ${join(flat, 'step-300.safetensors')} both report 2B tokens (safetensors metadata tokens): a window in tokens cannot tell them apart`,
    );
  });

  it("the CLI takes the suffixes and prints each checkpoint's tokens", () => {
    const r = pma(['merge', tokenRun, '--interval', '8B', '--window', '16B', '--dry-run']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/ 8000 +32B tokens {2}weight 0\.500000 /);
    expect(r.stdout).toMatch(/10000 +40B tokens {2}weight 0\.500000 /);
    const bad = pma(['merge', tokenRun, '--interval', 'eight', '--dry-run']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('invalid --interval: expected a count such as 8B, 500M or 1.3T, got "eight"');
  });
});

describe('pma recommend', () => {
  it('prints the interval, N and the merge options, with the source and its caveat', () => {
    const r = pma(['recommend', '--total-params', '13B', '--active-params', '1.3B', '--tokens-per-step', '4M']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('interval  save a checkpoint every 8B tokens (2000 steps)');
    expect(r.stdout).toContain('pma merge <run> --interval 8B --window 80B --tokens-per-step 4M --out <dir>');
    expect(r.stdout).toContain('source    Li et al., "Model Merging in Pre-training of Large Language Models" (2025)');
    expect(r.stdout).toContain('caveat    only the 1.3B/13B MoE was swept');
    const json = JSON.parse(pma(['recommend', '--total-params', '1B', '--json']).stdout) as {
      n: number;
      architecture: string;
    };
    expect([json.architecture, json.n]).toEqual(['dense', 6]);
    const bad = pma(['recommend']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('invalid --total-params: expected a count such as 8B, 500M or 1.3T, got nothing');
  });
});
