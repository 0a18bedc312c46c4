// The public API of pma: re-exports only. The layers below are src/cli -> this library ->
// src/run, src/output -> src/plan -> src/checkpoints, src/safetensors -> errors, dtypes, util
// (docs/architecture.md); nothing here is defined, so every name has one home.
export { merge, plan, type MergeResult } from './merge/merge.js';
export type { MergeOptions } from './merge/options.js';
export { NONFINITE_MODES, type NonFiniteFinding, type NonFiniteMode } from './merge/nonfinite.js';
export { inspect, type InspectResult, type InspectedCheckpoint, type InspectedQuantization } from './inspect.js';
export { verify, type VerifyResult, type VerifiedFile } from './verify.js';
export { finalize, partsStatus, type FinalizeResult, type PartState, type PartsStatus } from './parts.js';
export type { PartResult } from './merge/part.js';
export type { PartRecord } from './output/parts.js';
export type { LeaseHolder } from './util/lease.js';
export type { PartSpec } from './plan/parts.js';
export {
  PmaError,
  ERROR_CODES,
  exitStatusFor,
  type PmaErrorCode,
  type PmaErrorDetails,
  type PmaErrorWire,
} from './errors.js';
export type { PlanOptions, SelectionOptions } from './plan/options.js';
export {
  PAGE_CACHE_MODES,
  WRITE_MODES,
  type EngineOptions,
  type PageCacheMode,
  type WriteChoice,
} from './run/options.js';
export type { Progress } from './run/run-chunks.js';
export { CHECKSUMS } from './plan/types.js';
export type {
  Accumulate,
  Checksum,
  MergePlan,
  PlanChunk,
  PlanCheckpoint,
  PlanCopyOp,
  PlanFp8Op,
  PlanInputRange,
  PlanMergeOp,
  PlanOp,
  PlanCopyFile,
  PlanCrcPatch,
  PlanOutputFile,
  PlanParts,
  PlanQuantization,
  PlanTensor,
} from './plan/types.js';
export { FP8_DTYPES, type Fp8DType, type Fp8Scaling } from './checkpoints/quantization.js';
export {
  computeWeights,
  decayCurve,
  decayWeights,
  METHODS,
  SCHEDULES,
  type Method,
  type Schedule,
  type Weights,
} from './plan/weights.js';
export {
  readHeader,
  parseHeader,
  type HeaderBody,
  type HeaderCache,
  type SafetensorsHeader,
  type TensorEntry,
} from './safetensors/header.js';
export {
  DTYPE_BITS,
  AVERAGED_DTYPES,
  OUTPUT_DTYPES,
  type DType,
  type FloatDType,
  type OutputDTypeOption,
} from './dtypes.js';
export {
  native,
  type CpuInfo,
  type NativeCudaInfo,
  type NativeCudaDevice,
  type KernelChoice,
  type KernelName,
  type IoMode,
  type WriteMode,
  type Native,
  type NativeThreads,
  type DiskBusy,
  type FileOp,
  type HashRequest,
  type HashValue,
  type MemberCrc,
  type NativeChunk,
  type NativeReads,
  type NativeAnalysis,
  type ChunkStats,
  type EngineSeconds,
  type OpMoments,
  type MergeBuffersArgs,
  type CudaBenchArgs,
  type CudaBenchResult,
} from './native.js';
export {
  devices,
  cudaInfo,
  type CudaInfo,
  type CudaDeviceInfo,
  type GpuStaging,
  type DeviceOption,
  type DevicesReport,
} from './run/devices.js';
export type { MergeBreakdown } from './run/breakdown.js';
export {
  runBench,
  formatBenchReport,
  type BenchReportOptions,
  type BenchOptions,
  type BenchResult,
  type CaseData,
  type CaseParams,
  type CeilingsResult,
  type MachineInfo,
  type MergeRow,
  type ResolvedBenchOptions,
  type SeriesParams,
} from './bench/index.js';
export type { MoeShape } from './synthetic/models.js';
export { recommend, PMA_PAPER, type Recommendation, type RecommendOptions } from './recommend.js';
export { watchRun, type WatchOptions, type WatchMerge } from './watch.js';
export { analyze, type AnalyzeOptions, type AnalyzeResult } from './analyze/analyze.js';
export type { DeviationStats } from './analyze/moments.js';
export { reportHtml } from './analyze/report.js';
export { VERSION } from './util/package.js';
