import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, expect, it } from 'vitest';

import { CLI, pma, ROOT } from '../helpers/cli.js';
import { describeNeeds } from '../helpers/requires.js';
import { writeCheckpoint, type TensorSpec } from '../helpers/safetensors.js';
import { expectSameOutput } from '../helpers/outputs.js';
import { scratch } from '../helpers/scratch.js';
import { noSlurm, startSlurm, type SlurmCluster } from '../helpers/slurm.js';

// The docs' sbatch scripts, submitted as they are to a real (one-machine) Slurm cluster: a job
// array of 4 parts and the dependent finalize job, and an array task cancelled mid-merge and
// requeued. The output must be the single-process merge's, byte for byte.
const { tmp, out } = scratch('pma-slurm-');
const MERGE_SBATCH = join(ROOT, 'docs', 'examples', 'slurm', 'pma-merge.sbatch');
const FINALIZE_SBATCH = join(ROOT, 'docs', 'examples', 'slurm', 'pma-finalize.sbatch');

const SPECS: TensorSpec[] = Array.from({ length: 8 }, (_, i) => ({
  name: `model.layers.${i}.weight`,
  dtype: i % 2 === 0 ? 'F32' : 'BF16',
  shape: [2048, 1024],
}));
const run = join(tmp, 'run');
let slurm: SlurmCluster;
// The merge options every part gets (after RUN_DIR and OUT), and the single-process reference.
const OPTS = ['--threads', '1', '--chunk-size', '1MB', '--kernel', 'scalar'];
let reference = '';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Submits the docs' array script: 4 parts, one CPU each (the test machine has few). */
async function submitArray(o: string): Promise<string> {
  const r = await slurm.run(
    'sbatch',
    ['--parsable', '--array=0-3', '--cpus-per-task=1', MERGE_SBATCH, run, o, ...OPTS],
    tmp,
  );
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.trim().split(';')[0] as string;
}

/** Submits the docs' finalize script after the array, and waits for it; returns its output. */
async function finalizeAfter(jid: string, o: string): Promise<string> {
  const r = await slurm.run(
    'sbatch',
    ['--parsable', '--wait', `--dependency=afterany:${jid}`, FINALIZE_SBATCH, o],
    tmp,
  );
  expect(r.status, `${r.stderr}\n${logs()}`).toBe(0);
  return readFileSync(join(tmp, `pma-finalize-${r.stdout.trim().split(';')[0]}.out`), 'utf8');
}

/** The array tasks' logs, for a failure's message. */
function logs(): string {
  return readdirSync(tmp)
    .filter((f) => f.startsWith('pma-merge-'))
    .map((f) => `--- ${f}\n${readFileSync(join(tmp, f), 'utf8')}`)
    .join('\n');
}

describeNeeds(noSlurm, 'a merge split across a Slurm job array (the docs/examples/slurm scripts)', () => {
  beforeAll(() => {
    for (const [i, s] of [1000, 2000, 3000, 4000].entries())
      writeCheckpoint(join(run, `checkpoint-${s}`), SPECS, 300 + i, { shards: 2 });
    slurm = startSlurm(join(tmp, 'slurm'));
    slurm.env.PMA = `${process.execPath} ${CLI}`;
    // The shards 4 parts cut the output into (the plan says), asked of the single-process merge.
    const plan = pma(['merge', run, '--out', out(), '--part', '0/4', '--dry-run']);
    const size = /--max-shard-size (\d+)\)/.exec(plan.stdout)?.[1] as string;
    reference = out();
    expect(pma(['merge', run, '--out', reference, '-q', '--max-shard-size', size]).status).toBe(0);
  }, 120_000);
  afterAll(() => slurm?.stop());

  it('sbatch --array=0-3 and the dependent finalize job: the single-process bytes', async () => {
    const o = out();
    const jid = await submitArray(o);
    const fin = await finalizeAfter(jid, o);
    expect(fin).toContain('already finalized'); // the last part did it
    for (let t = 0; t < 4; t++) expect(await slurm.state(`${jid}_${t}`)).toBe('COMPLETED');
    expectSameOutput(reference, o);
    expect(existsSync(`${o}.partial`)).toBe(false);
    expect(pma(['verify', o]).status).toBe(0);
    const record = JSON.parse(readFileSync(join(o, 'pma.json'), 'utf8')) as {
      parts: { parts: { source: string }[] };
    };
    expect(record.parts.parts.map((p) => p.source)).toEqual(
      [0, 1, 2, 3].map((t) => `SLURM_ARRAY_TASK_ID=${t}, SLURM_ARRAY_TASK_MIN=0, SLURM_ARRAY_TASK_COUNT=4`),
    );
  }, 300_000);

  it('an array task cancelled mid-merge (scancel) and requeued finishes its part: the same bytes', async () => {
    const o = out();
    const jid = await submitArray(o);
    const task = `${jid}_1`;
    // Cancelled once its part has begun writing: its lock is taken, its files are created.
    const lock = join(`${o}.partial`, '.pma-resume', 'part-1', 'lock');
    for (let t = 0; t < 3000 && !existsSync(lock); t++) await sleep(10);
    expect((await slurm.run('scancel', [task])).status).toBe(0);
    let killed = '';
    for (let t = 0; t < 300 && !['CANCELLED', 'COMPLETED', 'FAILED'].includes(killed); t++) {
      killed = await slurm.state(task);
      await sleep(100);
    }
    // Slurm requeues it as it would after a node failure; the rerun resumes the part.
    expect((await slurm.run('scontrol', ['requeue', task])).status).toBe(0);
    expect((await slurm.run('scontrol', ['update', `jobid=${task}`, 'StartTime=now'])).status).toBe(0);
    await finalizeAfter(jid, o);
    expect(await slurm.state(task), logs()).toBe('COMPLETED');
    console.log(`array task 1 was ${killed} when requeued`);
    expect(killed).toBe('CANCELLED');
    expect(logs()).toMatch(/part 1\/4/);
    expectSameOutput(reference, o);
    expect(pma(['verify', o]).status).toBe(0);
  }, 300_000);
});
