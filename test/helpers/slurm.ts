import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, hostname } from 'node:os';
import { join } from 'node:path';

import { hasCommand } from './requires.js';

/**
 * A one-machine Slurm cluster for the tests, where Debian's slurm-wlm and munge are installed
 * and the tests run as root: this host is the only node; every daemon gets its own private
 * socket, ports, state, spool and log directories under `dir`, and is stopped by its pid file.
 */
export const noSlurm: string | null =
  process.getuid?.() !== 0
    ? 'needs root to run slurmctld and slurmd'
    : !['slurmctld', 'slurmd'].every((c) => hasCommand(c, ['-V'])) ||
        !['sbatch', 'scontrol', 'scancel', 'squeue', 'sinfo'].every((c) => hasCommand('sh', ['-c', `command -v ${c}`]))
      ? "needs Slurm (Debian's slurm-wlm)"
      : !hasCommand('munged', ['--version'])
        ? "needs munge (Debian's munge)"
        : null;

export interface SlurmCluster {
  /** The environment for sbatch, squeue, scontrol: SLURM_CONF. */
  env: NodeJS.ProcessEnv;
  /**
   * Runs a Slurm command without blocking the test's thread (`sbatch --wait` takes as long as the
   * job: the test runner's worker must keep answering meanwhile).
   */
  run(cmd: string, args: string[], cwd?: string): Promise<{ status: number; stdout: string; stderr: string }>;
  /** The state of job (or array task) `id`: RUNNING, PENDING, COMPLETED, CANCELLED, ... or '' when unknown. */
  state(id: string): Promise<string>;
  stop(): void;
}

const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

export function startSlurm(dir: string): SlurmCluster {
  for (const d of ['state', 'spool', 'log', 'munge']) mkdirSync(join(dir, d), { recursive: true, mode: 0o700 });
  const key = join(dir, 'munge', 'munge.key');
  writeFileSync(key, randomBytes(1024), { mode: 0o400 });
  chmodSync(key, 0o400);
  const socket = join(dir, 'munge', 'munge.sock');
  const pids = {
    munged: join(dir, 'munge', 'munged.pid'),
    ctld: join(dir, 'slurmctld.pid'),
    d: join(dir, 'slurmd.pid'),
  };
  // Ports of this test run's own: two apart per process, away from Slurm's 6817/6818.
  const port = 20_000 + (process.pid % 10_000) * 2;
  const host = hostname();
  const conf = join(dir, 'slurm.conf');
  writeFileSync(
    conf,
    [
      'ClusterName=pmatest',
      `SlurmctldHost=${host}`,
      'SlurmUser=root',
      'SlurmdUser=root',
      `SlurmctldPort=${port}`,
      `SlurmdPort=${port + 1}`,
      'AuthType=auth/munge',
      `AuthInfo=socket=${socket}`,
      `StateSaveLocation=${join(dir, 'state')}`,
      `SlurmdSpoolDir=${join(dir, 'spool')}`,
      `SlurmctldPidFile=${pids.ctld}`,
      `SlurmdPidFile=${pids.d}`,
      `SlurmctldLogFile=${join(dir, 'log', 'slurmctld.log')}`,
      `SlurmdLogFile=${join(dir, 'log', 'slurmd.log')}`,
      'ProctrackType=proctrack/linuxproc',
      'TaskPlugin=task/none',
      'SelectType=select/cons_tres',
      'SelectTypeParameters=CR_Core',
      'SchedulerType=sched/backfill',
      'ReturnToService=2',
      'MpiDefault=none',
      'JobAcctGatherType=jobacct_gather/none',
      'AccountingStorageType=accounting_storage/none',
      `NodeName=${host} CPUs=${availableParallelism()} RealMemory=2000 State=UNKNOWN`,
      'PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP',
      '',
    ].join('\n'),
  );
  const env = { ...process.env, SLURM_CONF: conf };
  const runSync = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { env, encoding: 'utf8', cwd: dir, timeout: 60_000 });
    return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  };
  const run = (cmd: string, args: string[], cwd?: string) =>
    new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(cmd, args, { env, cwd: cwd ?? dir, timeout: 300_000 });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (status) => resolve({ status: status ?? -1, stdout, stderr }));
    });
  // Each daemon by its pid file, waited for (up to 10 s): the test's directory is removed next.
  const stop = () => {
    for (const file of [pids.d, pids.ctld, pids.munged]) {
      if (!existsSync(file)) continue;
      const pid = Number(readFileSync(file, 'utf8').trim());
      const alive = () => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      };
      if (!alive()) continue;
      process.kill(pid, 'SIGTERM');
      for (let t = 0; t < 100 && alive(); t++) sleepSync(100);
    }
  };
  const started = [
    runSync('munged', [
      '--force',
      `--socket=${socket}`,
      `--key-file=${key}`,
      `--pid-file=${pids.munged}`,
      `--log-file=${join(dir, 'munge', 'munged.log')}`,
      `--seed-file=${join(dir, 'munge', 'munged.seed')}`,
    ]),
    runSync('slurmctld', ['-f', conf]),
    runSync('slurmd', ['-f', conf]),
  ];
  const failed = started.find((r) => r.status !== 0);
  // The node registers within seconds: wait until it takes jobs.
  for (let t = 0; t < 100 && !failed; t++) {
    if (runSync('sinfo', ['-h', '-o', '%t']).stdout.trim() === 'idle') break;
    sleepSync(200);
  }
  if (failed || runSync('sinfo', ['-h', '-o', '%t']).stdout.trim() !== 'idle') {
    stop();
    const log = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8').slice(-2000) : '');
    throw new Error(
      `the test's Slurm cluster did not start: ${failed?.stderr ?? ''}\n${log(join(dir, 'log', 'slurmctld.log'))}\n${log(join(dir, 'log', 'slurmd.log'))}`,
    );
  }
  return {
    env,
    run,
    state: async (id) => (await run('squeue', ['-h', '-t', 'all', '-j', id, '-o', '%T'])).stdout.trim(),
    stop,
  };
}
