// The layers of src/, each importing only the ones below it (docs/architecture.md):
//   cli -> library -> run -> plan -> formats -> base
// `npm run lint` (and so CI) fails on an import that goes the other way, or on any cycle.
const BASE = '^src/(errors|dtypes|validate)[.]ts$|^src/util/';
const FORMATS = '^src/(safetensors|dcp|checkpoints|synthetic)/';
const PLAN = '^src/plan/';
const RUN = '^src/native[.]ts$|^src/(run|output)/';
const LIBRARY = '^src/(merge|analyze|bench)/|^src/(index|watch|inspect|verify|parts|recommend)[.]ts$';
const CLI = '^src/cli/';

const layer = (name, from, allowed) => ({
  name: `${name}-imports-only-below`,
  comment: `${name} may import only ${allowed.label}`,
  severity: 'error',
  from: { path: from },
  to: { path: '^src/', pathNot: allowed.paths.join('|') },
});

module.exports = {
  forbidden: [
    { name: 'no-circular', comment: 'no import cycles', severity: 'error', from: {}, to: { circular: true } },
    layer('base', BASE, { label: 'base (errors, dtypes, validate, util)', paths: [BASE] }),
    layer('formats', FORMATS, { label: 'formats and base', paths: [FORMATS, BASE] }),
    layer('plan', PLAN, {
      label: 'plan, formats and base (never the native surface, run or output)',
      paths: [PLAN, FORMATS, BASE],
    }),
    layer('run', RUN, { label: 'run/output, plan, formats and base', paths: [RUN, PLAN, FORMATS, BASE] }),
    layer('library', LIBRARY, { label: 'anything but the CLI', paths: [LIBRARY, RUN, PLAN, FORMATS, BASE] }),
    {
      name: 'every-file-in-a-layer',
      comment: 'every source file belongs to one of the layers above',
      severity: 'error',
      from: { path: '^src/', pathNot: [BASE, FORMATS, PLAN, RUN, LIBRARY, CLI].join('|') },
      to: {},
    },
    { name: 'src-never-imports-tests', severity: 'error', from: { path: '^src/' }, to: { path: '^test/' } },
    { name: 'no-unresolvable', severity: 'error', from: {}, to: { couldNotResolve: true } },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
