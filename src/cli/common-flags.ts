import type { Flag } from './flags.js';

// The flags several commands share, as one table each: pma merge, watch and analyze select and
// weigh checkpoints the same way, with the same words.

export const SELECTION_FLAGS: Flag[] = [
  { name: 'from-step', type: 'string', option: 'fromStep', value: 'S', help: 'keep checkpoints with step >= S' },
  { name: 'to-step', type: 'string', option: 'toStep', value: 'S', help: 'keep checkpoints with step <= S' },
  {
    name: 'interval',
    type: 'string',
    option: 'interval',
    value: 'T',
    help: ['in tokens (8B, 500M, 1.2T): checkpoints at least T apart,', 'counted back from the newest'],
  },
  {
    name: 'window',
    type: 'string',
    option: 'window',
    value: 'T',
    help: 'in tokens: the checkpoints within T of the newest',
  },
  {
    name: 'tokens-per-step',
    type: 'string',
    option: 'tokensPerStep',
    value: 'T',
    help: [
      "tokens = step x T; without it, each checkpoint's count is read",
      'from trainer_state.json (num_input_tokens_seen) or config.json',
      '(consumed_tokens, tokens)',
    ],
  },
  {
    name: 'every',
    type: 'string',
    option: 'every',
    value: 'K',
    help: 'every K-th checkpoint, counted back from the newest',
  },
  { name: 'last', type: 'string', option: 'last', value: 'N', help: 'the N newest' },
  {
    name: 'average',
    type: 'list',
    option: 'average',
    value: 'GLOB,...',
    help: [
      'average only the tensors these name globs match ("model.*");',
      'default: every float tensor (of a DCP checkpoint: all but',
      'training state such as optimizer.*)',
    ],
  },
  {
    name: 'exclude',
    type: 'list',
    option: 'exclude',
    value: 'GLOB,...',
    help: 'never average these tensors: copied from the newest checkpoint',
  },
  {
    name: 'allow-config-mismatch',
    type: 'boolean',
    option: 'allowConfigMismatch',
    help: [
      'merge checkpoints whose config.json names different models',
      '(model_type, architectures); other differences only warn',
    ],
  },
  {
    name: 'copy-quantized',
    type: 'boolean',
    option: 'copyQuantized',
    help: [
      'checkpoints quantized with a scheme pma cannot average (GPTQ,',
      'AWQ, bitsandbytes, ...) are refused; this copies their quantized',
      'tensors from the newest and averages the rest (FP8 with block,',
      'channel or tensor scales is averaged)',
    ],
  },
];

export const SELECTION_TITLE = 'Selection (applied in this order: steps, tokens, --every, --last)';

export const WEIGHT_FLAGS: Flag[] = [
  {
    name: 'method',
    type: 'string',
    option: 'method',
    value: 'M',
    help: [
      'sma (default): equal; wma: linear, newest heaviest;',
      'ema: recursion from the oldest with --alpha (default 0.2);',
      'decay: weights that emulate a learning-rate decay over the',
      'window (--schedule)',
    ],
  },
  { name: 'alpha', type: 'string', option: 'alpha', value: 'A', help: 'EMA factor, 0 < A < 1' },
  {
    name: 'schedule',
    type: 'string',
    option: 'schedule',
    value: 'S',
    help: 'with --method decay: linear (default), cosine, inverse-sqrt, 1-sqrt',
  },
  {
    name: 'weights',
    type: 'list',
    option: 'weights',
    value: 'w1,w2,...',
    help: 'explicit weights, oldest to newest (normalised to sum 1)',
  },
];

export const FORMAT_FLAG: Flag = {
  name: 'format',
  type: 'string',
  option: 'format',
  value: 'F',
  help: [
    "safetensors or dcp (default: the inputs' format). dcp: the newest",
    'checkpoint with the averages written in, for the trainer to resume',
    'from; safetensors: the averaged model tensors alone, for evaluation',
  ],
};

export const DTYPE_FLAGS: Flag[] = [
  {
    name: 'dtype',
    type: 'string',
    option: 'dtype',
    value: 'D',
    help: [
      'dtype of averaged tensors: keep (default), bf16, f16, f32; FP8',
      'kept is requantised with new block scales, else dequantised',
    ],
  },
  {
    name: 'accumulate',
    type: 'string',
    option: 'accumulate',
    value: 'A',
    help: 'accumulator: f32 (default, the bit-exact contract) or f64',
  },
  {
    name: 'on-nonfinite',
    type: 'string',
    option: 'onNonfinite',
    value: 'MODE',
    help: [
      'NaN or Inf in an input: error (default) stops before writing the',
      'output; warn merges anyway and reports them; skip-checkpoint',
      'merges again without the checkpoints that hold them',
    ],
  },
];

export const CHECKSUM_FLAG: Flag = {
  name: 'checksum',
  type: 'string',
  option: 'checksum',
  value: 'C',
  help: [
    "checksum of the output files in pma.json: blake3 (default; b3sum's",
    'digest, several times faster) or sha256',
  ],
};

/** How merges write their output: pma merge's, and pma bench's for the merges it times. */
export const WRITE_FLAG: Flag = {
  name: 'write',
  type: 'string',
  option: 'write',
  value: 'MODE',
  help: [
    'auto|buffered|direct: buffered goes through the page cache; direct',
    'writes the aligned middle with O_DIRECT on writer threads, past it',
    '(default auto: direct; on GPUs only when the page cache is dropped)',
  ],
};

export const KERNEL_FLAG: Flag = {
  name: 'kernel',
  type: 'string',
  option: 'kernel',
  value: 'K',
  help: ['CPU arithmetic: auto (default: the best the CPU has), scalar,', 'avx2, avx512'],
};

export const DEVICE_FLAGS: Flag[] = [
  {
    name: 'threads',
    type: 'string',
    option: 'threads',
    value: 'N',
    help: [
      'worker threads (default: number of cores; on GPUs, up to 8,',
      '4 per GPU: each has a reader and a writer thread); the output',
      'is hashed on them too, and on cores that N leaves free',
    ],
  },
  {
    name: 'device',
    type: 'string',
    option: 'device',
    value: 'D',
    help: [
      'cpu (default), auto, cuda, cuda:0,1 or cuda:all: where the',
      'arithmetic runs; auto: GPU 0 when this build has CUDA and a',
      'usable GPU, else the CPU; the bytes are the same on every',
      'device (see pma devices)',
    ],
  },
  {
    name: 'gpu-memory',
    type: 'string',
    option: 'gpuMemory',
    value: 'SIZE',
    help: [
      'device memory per GPU, and as much pinned host memory for',
      "staging (default a tenth of the GPU's free memory, at most 1GiB)",
    ],
  },
  KERNEL_FLAG,
];

/** --out DIR (-o), with the command's own words for what goes there. */
export function outFlag(help: string): Flag {
  return { name: 'out', type: 'string', option: 'out', short: 'o', value: 'DIR', help };
}

export const JSON_FLAG: Flag = { name: 'json', type: 'boolean', help: 'print the result as JSON' };
