import { join } from 'node:path';

import { encode } from './values.js';
import { moeConfig, moeTensors, type MoeShape } from './models.js';
import { writeSyntheticCheckpoint, type SyntheticTensor } from './writer.js';

/**
 * The demo run: a tiny training run to try pma on (`pma demo`, `npm run demo`, the packaging
 * test). Five checkpoints of a small MoE-shaped model with BF16 weights, an F32 router and norms
 * and an F16 head, the newest sharded; each with a config.json and training state that a merge
 * must leave behind.
 */
export const DEMO_STEPS = [1000, 2000, 3000, 4000, 10000] as const;
export const DEMO_SHAPE: MoeShape = {
  hidden: 64,
  intermediate: 128,
  kvDim: 64,
  experts: 4,
  layers: 2,
  vocab: 512,
  headDim: 32,
};

export function demoTensors(): SyntheticTensor[] {
  return moeTensors(DEMO_SHAPE, { weights: 'BF16', router: 'F32', norms: 'F32', head: 'F16' });
}

/** Element i of tensor t at `step`: weights drifting around a basin, as the checkpoints of one run do. */
export function demoValue(t: SyntheticTensor, step: number, i: number): number {
  return Math.sin(i * 0.37 + t.name.length) * 0.5 + Math.sin(i * 1.7 + step * 1e-3) * 0.05;
}

/** Writes the demo run into `dir` (checkpoint-1000 ... checkpoint-10000); returns the checkpoints' paths. */
export function writeDemoRun(dir: string): string[] {
  const tensors = demoTensors();
  return DEMO_STEPS.map((step) => {
    const ck = join(dir, `checkpoint-${step}`);
    writeSyntheticCheckpoint(ck, {
      tensors,
      data: (t) =>
        encode(
          t.dtype as 'BF16' | 'F16' | 'F32',
          t.shape.reduce((a, b) => a * b, 1),
          (i) => demoValue(t, step, i),
        ),
      shards: step === DEMO_STEPS[DEMO_STEPS.length - 1] ? 3 : 1,
      files: {
        'config.json': moeConfig(DEMO_SHAPE, 'BF16', 'pma-demo'),
        'optimizer.pt': 'training state: never copied into a merge',
        'trainer_state.json': `${JSON.stringify({ global_step: step, num_input_tokens_seen: step * 4096 })}\n`,
      },
    });
    return ck;
  });
}
