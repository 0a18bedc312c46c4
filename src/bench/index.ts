/** The merge benchmark: `pma bench` (src/cli/bench.ts) and `npm run bench` (bench/merge.bench.js). */
export {
  runBench,
  runSuite,
  formatBenchReport,
  formatSuiteReport,
  type BenchReportOptions,
  type BenchResult,
  type SuiteResult,
  type SuiteCase,
  type CaseResult,
  type MergeRow,
  type CeilingsResult,
  type CaseData,
  type CaseParams,
} from './run.js';
export { resolveBenchOptions, defaultBenchDir, type BenchOptions, type ResolvedBenchOptions } from './options.js';
export { standardSuite } from './suite.js';
export { generateSeries, describeSeries, formatSize, type SeriesParams } from './series.js';
export { machineInfo, catFiles, timedWrite, type MachineInfo } from './ceilings.js';
