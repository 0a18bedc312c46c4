import { describe, expect, it } from 'vitest';

import { assignFiles, imbalance, resolvePart } from '../../src/plan/parts.js';
import { thrownSync } from '../helpers/errors.js';

describe('resolvePart', () => {
  it('takes --part I/N as given, 0-based', () => {
    expect(resolvePart('2/4', {})).toEqual({ index: 2, count: 4, source: '--part 2/4' });
    expect(resolvePart(' 0 / 1 ', {})).toEqual({ index: 0, count: 1, source: '--part 0/1' });
    expect(resolvePart('3/4', {}, '4')).toMatchObject({ index: 3, count: 4 });
  });

  it('refuses what is not a part, with the one message format', () => {
    for (const bad of ['4/4', '1/0', '-1/4', 'a/b', '1', '', 3, '1/70000']) {
      const e = thrownSync(() => resolvePart(bad, {}));
      expect([e.code, e.option], String(bad)).toEqual(['E_USAGE', 'part']);
      expect(e.message).toMatch(
        /^invalid part: expected "auto" or I\/N with 0 <= I < N <= 65536 \(e\.g\. 0\/4\), got /,
      );
    }
    expect(thrownSync(() => resolvePart('1/4', {}, 3)).message).toBe('--parts 3 disagrees with --part 1/4');
  });

  it('auto: a Slurm job array, counted from its first task', () => {
    const env = {
      SLURM_ARRAY_TASK_ID: '12',
      SLURM_ARRAY_TASK_MIN: '10',
      SLURM_ARRAY_TASK_COUNT: '4',
      SLURM_PROCID: '0',
      SLURM_NTASKS: '1',
    };
    expect(resolvePart('auto', env)).toEqual({
      index: 2,
      count: 4,
      source: 'SLURM_ARRAY_TASK_ID=12, SLURM_ARRAY_TASK_MIN=10, SLURM_ARRAY_TASK_COUNT=4',
    });
    expect(resolvePart('auto', { SLURM_ARRAY_TASK_ID: '3', SLURM_ARRAY_TASK_COUNT: '4' })).toMatchObject({
      index: 3,
      count: 4,
    });
    // --array=0-15:2 runs 8 tasks with ids 0, 2, ..., 14: not consecutive parts.
    expect(
      thrownSync(() => resolvePart('auto', { SLURM_ARRAY_TASK_ID: '14', SLURM_ARRAY_TASK_COUNT: '8' })).message,
    ).toMatch(/is not one of 8 consecutive tasks .*submit --array=0-7$/);
  });

  it('auto: srun tasks, a Kubernetes Indexed Job (with --parts), torchrun', () => {
    expect(resolvePart('auto', { SLURM_PROCID: '5', SLURM_NTASKS: '8' })).toEqual({
      index: 5,
      count: 8,
      source: 'SLURM_PROCID=5, SLURM_NTASKS=8',
    });
    expect(resolvePart('auto', { JOB_COMPLETION_INDEX: '6' }, '7')).toEqual({
      index: 6,
      count: 7,
      source: 'JOB_COMPLETION_INDEX=6, --parts 7',
    });
    expect(thrownSync(() => resolvePart('auto', { JOB_COMPLETION_INDEX: '6' })).message).toMatch(
      /JOB_COMPLETION_INDEX=6 \(a Kubernetes Indexed Job\) needs --parts N/,
    );
    expect(thrownSync(() => resolvePart('auto', { JOB_COMPLETION_INDEX: '7' }, 7)).message).toMatch(
      /part 7 of 7 .* does not exist/,
    );
    expect(resolvePart('auto', { RANK: '1', WORLD_SIZE: '2' })).toMatchObject({
      index: 1,
      count: 2,
      source: 'RANK=1, WORLD_SIZE=2',
    });
    expect(thrownSync(() => resolvePart('auto', { RANK: '1', WORLD_SIZE: '2' }, 3)).message).toBe(
      '--part auto: --parts 3 disagrees with RANK=1, WORLD_SIZE=2',
    );
    expect(thrownSync(() => resolvePart('auto', { RANK: 'x', WORLD_SIZE: '2' })).message).toBe(
      '--part auto: RANK=x is not an integer >= 0',
    );
    expect(thrownSync(() => resolvePart('auto', {})).message).toMatch(/^--part auto: no scheduler environment found/);
  });
});

describe('assignFiles', () => {
  it('largest first, each to the least loaded part; the same answer every time', () => {
    const sizes = [5, 9, 1, 7, 3, 3, 8];
    const part = assignFiles(sizes, 3);
    // 9 -> 0, 8 -> 1, 7 -> 2, 5 -> 2 (7), 3 -> 1 (8), 3 -> 0 (9), 1 -> 1 (11): 12 bytes each.
    expect(part).toEqual([2, 0, 1, 2, 1, 0, 1]);
    expect(imbalance(sizes, part, 3)).toBe(1);
    expect(imbalance(sizes, [0, 0, 0, 0, 0, 0, 1], 2)).toBeCloseTo(28 / 18, 12);
    expect(assignFiles(sizes, 3)).toEqual(part);
  });

  it('more parts than files leaves parts without a file; one part takes all', () => {
    expect(assignFiles([4, 4], 4)).toEqual([0, 1]);
    expect(assignFiles([4, 2, 1], 1)).toEqual([0, 0, 0]);
    expect(imbalance([4, 2, 1], [0, 0, 0], 1)).toBe(1);
    expect(imbalance([], [], 2)).toBe(1);
  });
});
