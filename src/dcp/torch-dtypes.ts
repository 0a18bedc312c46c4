import type { DType } from '../dtypes.js';

// The one table of torch's dtype and storage names, read both ways: the reader maps them to pma's
// dtypes, the writer maps pma's dtypes back (to the first, canonical, name).

/** torch dtype names (as torch.<name> globals) and pma's dtypes. */
export const TORCH_DTYPES: Record<string, DType | null> = {
  float32: 'F32',
  float: 'F32',
  float16: 'F16',
  half: 'F16',
  bfloat16: 'BF16',
  float64: 'F64',
  double: 'F64',
  int64: 'I64',
  long: 'I64',
  int32: 'I32',
  int: 'I32',
  int16: 'I16',
  short: 'I16',
  int8: 'I8',
  uint8: 'U8',
  bool: 'BOOL',
  float8_e4m3fn: 'F8_E4M3',
  float8_e5m2: 'F8_E5M2',
  complex64: 'C64',
  uint16: 'U16',
  uint32: 'U32',
  uint64: 'U64',
  complex128: null,
  float8_e4m3fnuz: null,
  float8_e5m2fnuz: null,
};

/** torch's storage classes, by the dtype of their elements. */
export const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: 'F32',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  DoubleStorage: 'F64',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
  ComplexFloatStorage: 'C64',
};

/** The first key of `table` whose value is `dtype`. */
const nameOf = (table: Record<string, DType | null>, dtype: DType): string | undefined =>
  Object.keys(table).find((k) => table[k] === dtype);

/** torch's name of a dtype ("bfloat16"), or undefined for one torch lacks. */
export const torchName = (dtype: DType): string | undefined => nameOf(TORCH_DTYPES, dtype);

/** torch's storage class of a dtype ("BFloat16Storage"), or undefined. */
export const storageName = (dtype: DType): string | undefined => nameOf(STORAGE_DTYPES, dtype);
