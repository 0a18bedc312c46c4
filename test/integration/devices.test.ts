import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { merge } from '../../src/index.js';
import { native } from '../../src/native.js';
import { cudaInfo, cudaVersion } from '../../src/run/devices.js';
import { pma, ROOT } from '../helpers/cli.js';
import { rejected } from '../helpers/errors.js';
import { caseOptions, cases, cliArgs, expectGolden } from '../helpers/golden.js';
import { gpuSkipReason } from '../helpers/gpu.js';
import { itNeeds } from '../helpers/requires.js';

// What runs on every machine: the build says what it is, and asking for a GPU where there is none
// fails cleanly. The GPU's own results are checked in test/gpu/.
const tmp = mkdtempSync(join(tmpdir(), 'pma-devices-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const noGpu = gpuSkipReason !== null;
const golden = cases[0] as (typeof cases)[number];

describe('devices', () => {
  it('the addon is the variant the build recorded (cuda when nvcc was found, unless PMA_CUDA=0)', () => {
    const build = JSON.parse(readFileSync(join(ROOT, 'build', 'pma-build.json'), 'utf8')) as {
      variant: string;
      reason: string;
    };
    expect(['cpu', 'cuda']).toContain(build.variant);
    expect(native().cuda).toBe(build.variant === 'cuda');
    expect(native().cudaInfo().built).toBe(build.variant === 'cuda');
  });

  itNeeds(native().cuda ? null : 'needs the CUDA build')(
    'the CUDA build records its toolkit and the driver it needs, as pma devices states them',
    () => {
      const build = JSON.parse(readFileSync(join(ROOT, 'build', 'pma-build.json'), 'utf8')) as {
        toolkit: string;
        driverNeeded: { cuda: string; linux: string | null };
      };
      const info = cudaInfo();
      // The static runtime in the addon is the toolkit's own: 13000 for CUDA 13.0.
      expect(build.toolkit).toBe(cudaVersion(info.runtimeVersion));
      expect(info.driverNeeded).toBe(
        `CUDA ${build.driverNeeded.cuda} (Linux driver ${build.driverNeeded.linux} or newer)`,
      );
    },
  );

  it('the install script passes over a CUDA toolkit older than 12.0, saying why', () => {
    // A stand-in nvcc that only answers --version: with PMA_CUDA=1 the script must refuse it before
    // building anything (build/ is left as it is).
    const bin = join(tmp, 'old-cuda', 'bin');
    mkdirSync(bin, { recursive: true });
    const nvcc = join(bin, 'nvcc');
    writeFileSync(nvcc, '#!/bin/sh\necho "Cuda compilation tools, release 11.8, V11.8.89"\n');
    chmodSync(nvcc, 0o755);
    const before = readFileSync(join(ROOT, 'build', 'pma-build.json'), 'utf8');
    const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'build-native.mjs')], {
      encoding: 'utf8',
      env: { ...process.env, PMA_CUDA: '1', CUDACXX: nvcc },
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(
      `pma: the CUDA build cannot use ${nvcc}: CUDA 11.8 is older than 12.0, the oldest toolkit pma builds with (PMA_CUDA=1)`,
    );
    expect(readFileSync(join(ROOT, 'build', 'pma-build.json'), 'utf8')).toBe(before);
  });

  it('pma devices reports the CPU kernels and the CUDA state without failing', () => {
    const r = pma(['devices']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^cpu {7}\d+ cores, kernels scalar/m);
    expect(r.stdout).toMatch(
      native().cuda
        ? /^cuda {6}built for \S+, runtime \d+\.\d+, needs CUDA \d+\.0 \(Linux driver [\d.]+ or newer\); driver (none|\S+)/m
        : /^cuda {6}not in this build/m,
    );
    const j = JSON.parse(pma(['devices', '--json']).stdout) as {
      cpu: { kernels: string[] };
      cuda: { built: boolean; devices: unknown[] };
    };
    expect(j.cpu.kernels).toContain('scalar');
    expect(j.cuda.built).toBe(native().cuda);
    if (noGpu && native().cuda) expect(r.stdout).toMatch(/^gpus {6}none \(.+\)$/m);
  });

  itNeeds(noGpu ? null : 'needs a machine without a usable GPU')(
    '--device cuda without a GPU fails with E_UNSUPPORTED and writes nothing',
    async () => {
      const out = join(tmp, 'refused');
      const err = await rejected(merge({ ...caseOptions(golden), out, device: 'cuda' }));
      expect(err.code).toBe('E_UNSUPPORTED');
      expect(err.message).toMatch(
        native().cuda
          ? /^--device cuda: no CUDA device is usable here \(.+\); use --device cpu or auto$/
          : /^--device cuda: this build of pma has no CUDA support/,
      );
      expect(existsSync(out)).toBe(false);
      expect(readdirSync(tmp).filter((f) => f.endsWith('.partial'))).toEqual([]);
      const cli = pma(['merge', ...cliArgs(golden), '--device', 'cuda:all', '--out', out]);
      expect(cli.status).toBe(2);
      expect(cli.stderr).toMatch(/pma: error \[E_UNSUPPORTED\]: --device cuda:all: /);
      expect(existsSync(out)).toBe(false);
    },
  );

  itNeeds(noGpu ? null : 'needs a machine without a usable GPU')(
    '--device auto falls back to the CPU, says why, and gives the golden bytes',
    async () => {
      const out = join(tmp, 'auto');
      const r = await merge({ ...caseOptions(golden), out, device: 'auto' });
      expect(r.device).toBe('cpu');
      expect(r.deviceNote).toMatch(/^--device auto chose the CPU: /);
      expectGolden(golden, out);
      const p = JSON.parse(readFileSync(join(out, 'pma.json'), 'utf8')) as { device: string };
      expect(p.device).toBe('cpu');
      const cli = pma(['merge', ...cliArgs(golden), '--device', 'auto', '--out', join(tmp, 'auto-cli')]);
      expect(cli.status).toBe(0);
      expect(cli.stderr).toMatch(/note: --device auto chose the CPU: /);
      expect(cli.stdout).toMatch(/, (scalar|avx2|avx512), \d+ threads\)/);
    },
  );

  itNeeds(noGpu ? null : 'needs a machine without a usable GPU')(
    '--dry-run says where a GPU merge would run, and that this machine has no GPU, without failing',
    () => {
      const cuda = pma(['merge', ...cliArgs(golden), '--device', 'cuda', '--dry-run']);
      expect(cuda.status).toBe(0);
      expect(cuda.stdout).toMatch(/^device: not on this machine: --device cuda: .+$/m);
      const auto = pma(['merge', ...cliArgs(golden), '--device', 'auto', '--dry-run']);
      expect(auto.status).toBe(0);
      expect(auto.stdout).toMatch(/^device: cpu \(--device auto: .+\)$/m);
      const cpu = pma(['merge', ...cliArgs(golden), '--dry-run']);
      expect(cpu.stdout).not.toMatch(/^device: /m);
    },
  );

  it('checks --device and --gpu-memory before anything runs', () => {
    const bad = pma(['merge', ...cliArgs(golden), '--device', 'gpu0', '--out', join(tmp, 'x')]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain(
      'invalid --device: expected cpu, auto, cuda, cuda:all or cuda:<i>[,<j>...], got "gpu0"',
    );
    const mem = pma(['merge', ...cliArgs(golden), '--gpu-memory', 'lots', '--out', join(tmp, 'x')]);
    expect(mem.status).toBe(2);
    expect(mem.stderr).toContain('invalid --gpu-memory: expected a size such as 5GB, 500MB or 2GiB, got "lots"');
  });
});
