/** Every dtype the safetensors format knows, with its width in bits (F4 and F6 are sub-byte). */
export const DTYPE_BITS = {
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
} as const;

export type DType = keyof typeof DTYPE_BITS;

/** The dtypes pma averages; every other dtype is copied from the newest checkpoint. */
export const AVERAGED_DTYPES = ['BF16', 'F16', 'F32', 'F64'] as const;
export type FloatDType = (typeof AVERAGED_DTYPES)[number];

export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_BITS, s);
}

export function isAveraged(d: DType): d is FloatDType {
  return (AVERAGED_DTYPES as readonly string[]).includes(d);
}

/** Bytes per element of an averaged dtype. */
export function floatSize(d: FloatDType): number {
  return DTYPE_BITS[d] / 8;
}

/** Output dtype choices of `--dtype`. */
export const OUTPUT_DTYPES = ['keep', 'bf16', 'f16', 'f32'] as const;
export type OutputDTypeOption = (typeof OUTPUT_DTYPES)[number];

export function outputDtypeFor(input: FloatDType, option: OutputDTypeOption): FloatDType {
  return option === 'keep' ? input : (option.toUpperCase() as FloatDType);
}
