import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';

import { CLI, pma, ROOT } from '../helpers/cli.js';
import { writeCheckpoint, type TensorSpec } from '../helpers/safetensors.js';
import { scratch } from '../helpers/scratch.js';

// The docs' Kubernetes Indexed Job, checked without a cluster: its pods' commands, run as they
// stand, with the environment Kubernetes gives each pod (JOB_COMPLETION_INDEX) and the manifest's
// own variables pointed at a test run, must make the single-process merge.
const { tmp, out } = scratch('pma-k8s-');
const MANIFEST = join(ROOT, 'docs', 'examples', 'kubernetes', 'pma-merge-job.yaml');

interface Container {
  env: { name: string; value: string }[];
  command: string[];
  args: string[];
}
interface Job {
  metadata: { name: string };
  spec: { completionMode?: string; completions?: number; template: { spec: { containers: Container[] } } };
}

const jobs = parseAllDocuments(readFileSync(MANIFEST, 'utf8')).map((d) => d.toJSON() as Job);
const mergeJob = jobs.find((j) => j.metadata.name === 'pma-merge') as Job;
const finalizeJob = jobs.find((j) => j.metadata.name === 'pma-finalize') as Job;
const run = join(tmp, 'run');
const SPECS: TensorSpec[] = Array.from({ length: 12 }, (_, i) => ({ name: `w.${i}`, dtype: 'BF16', shape: [256, 96] }));

/** Runs a container's command as its pod would, with `env` over the manifest's own variables. */
function pod(c: Container, env: Record<string, string>): Promise<{ status: number | null; stderr: string }> {
  const own = Object.fromEntries(c.env.map((e) => [e.name, e.value]));
  const child = spawn(c.command[0] as string, [...c.command.slice(1), ...c.args], {
    env: { ...process.env, ...own, ...env, PMA: `${process.execPath} ${CLI}` },
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout.resume();
  return new Promise((r) => child.on('close', (status) => r({ status, stderr })));
}

beforeAll(() => {
  for (const [i, s] of [10, 20, 30].entries()) writeCheckpoint(join(run, `checkpoint-${s}`), SPECS, 500 + i);
});

describe('docs/examples/kubernetes/pma-merge-job.yaml', () => {
  it('is an Indexed Job whose --parts is its completions', () => {
    expect(mergeJob.spec.completionMode).toBe('Indexed');
    const c = mergeJob.spec.template.spec.containers[0] as Container;
    expect(c.env.find((e) => e.name === 'PMA_PARTS')?.value).toBe(String(mergeJob.spec.completions));
    expect(c.args.join(' ')).toContain('--part auto --parts "$PMA_PARTS"');
  });

  it("its pods' commands, one per index, then the finalize Job's: the single-process bytes", async () => {
    const n = mergeJob.spec.completions as number;
    const o = out();
    const env = { PMA_RUN: run, PMA_OUT: o };
    const c = mergeJob.spec.template.spec.containers[0] as Container;
    const pods = await Promise.all(
      Array.from({ length: n }, (_, i) => pod(c, { ...env, JOB_COMPLETION_INDEX: String(i) })),
    );
    for (const p of pods) expect(p.status, p.stderr).toBe(0);
    const fin = await pod(finalizeJob.spec.template.spec.containers[0] as Container, env);
    expect(fin.status, fin.stderr).toBe(0);
    const plan = pma(['merge', run, '--last', '8', '--out', out(), '--part', `0/${n}`, '--dry-run']);
    const size = /--max-shard-size (\d+)\)/.exec(plan.stdout)?.[1] as string;
    const single = out();
    expect(pma(['merge', run, '--last', '8', '--out', single, '-q', '--max-shard-size', size]).status).toBe(0);
    const names = readdirSync(single)
      .filter((f) => f !== 'pma.json')
      .sort();
    expect(
      readdirSync(o)
        .filter((f) => f !== 'pma.json')
        .sort(),
    ).toEqual(names);
    for (const f of names) expect(readFileSync(join(o, f)).equals(readFileSync(join(single, f))), f).toBe(true);
  }, 120_000);
});
