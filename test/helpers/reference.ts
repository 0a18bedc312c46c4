// An independent model of the golden contract in plain JavaScript doubles: an exactly rounded
// fp32 fma (two-sum error term decides the ties that double rounding would get wrong) and RNE
// rounding to bf16/f16 computed with powers of two rather than bit tricks. Slow; for tests only.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function f32FromBits(b: number): number {
  u32[0] = b >>> 0;
  return f32[0] as number;
}
export function bitsFromF32(x: number): number {
  f32[0] = x;
  return u32[0] as number;
}

function nextF32Toward(r: number, target: number): number {
  if (r === 0) return target > 0 ? f32FromBits(1) : f32FromBits(0x80000001);
  const b = bitsFromF32(r);
  const away = target > r === r > 0;
  return f32FromBits(away ? b + 1 : b - 1);
}

/** fma(a, b, c) rounded once to float32, for float32 a, b, c. */
export function fmaf(a: number, b: number, c: number): number {
  const p = a * b; // exact: 24 + 24 significant bits fit in a double
  const s = p + c;
  if (!Number.isFinite(s) || !Number.isFinite(p) || !Number.isFinite(c)) return Math.fround(s);
  const bb = s - p;
  const err = p - (s - bb) + (c - bb); // p + c = s + err exactly
  const r = Math.fround(s);
  if (err === 0 || r === s) return r;
  const rFinite = Number.isFinite(r) ? r : Math.sign(r) * 2 ** 128;
  const other = Number.isFinite(r) ? nextF32Toward(r, s) : Math.sign(r) * 3.4028234663852886e38;
  const mid = (rFinite + other) / 2;
  if (s !== mid) return r;
  // A tie in double is not a tie in the exact value: the error term says which side it is on.
  const up = err > 0;
  const hi = Math.max(rFinite, other);
  const lo = Math.min(rFinite, other);
  const pick = up ? hi : lo;
  return Math.abs(pick) === 2 ** 128 ? Math.sign(pick) * Infinity : pick;
}

/** Round a double to a binary format with `mant` fraction bits, RNE, subnormals kept. */
export function roundTo(v: number, mant: number, minExp: number, maxExp: number): number {
  if (Number.isNaN(v) || v === 0 || !Number.isFinite(v)) return v;
  const a = Math.abs(v);
  let e = Math.max(Math.floor(Math.log2(a)), minExp);
  while (e > minExp && 2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (e - mant);
  const q = a / ulp;
  let n = Math.floor(q);
  const frac = q - n;
  if (frac > 0.5 || (frac === 0.5 && n % 2 === 1)) n++;
  const res = n * ulp;
  const max = (2 - 2 ** -mant) * 2 ** maxExp;
  return Math.sign(v) * (res > max ? Infinity : res);
}

export const toBf16Value = (v: number) => roundTo(v, 7, -126, 127);
export const toF16Value = (v: number) => roundTo(v, 10, -14, 15);

export function decode(dtype: string, buf: Uint8Array, i: number): number {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  switch (dtype) {
    case 'BF16':
      return f32FromBits(dv.getUint16(i * 2, true) << 16);
    case 'F16': {
      const h = dv.getUint16(i * 2, true);
      const s = h & 0x8000 ? -1 : 1;
      const e = (h >> 10) & 0x1f;
      const m = h & 0x3ff;
      if (e === 0) return s * m * 2 ** -24;
      if (e === 31) return m ? NaN : s * Infinity;
      return s * (1 + m / 1024) * 2 ** (e - 15);
    }
    case 'F32':
      return dv.getFloat32(i * 4, true);
    case 'F64':
      return dv.getFloat64(i * 8, true);
    default:
      throw new Error(`no decode for ${dtype}`);
  }
}

export function encode(dtype: string, v: number): Uint8Array {
  const out = new Uint8Array(dtype === 'F64' ? 8 : dtype === 'F32' ? 4 : 2);
  const dv = new DataView(out.buffer);
  if (Number.isNaN(v)) {
    if (dtype === 'BF16') dv.setUint16(0, 0x7fc0, true);
    else if (dtype === 'F16') dv.setUint16(0, 0x7e00, true);
    else if (dtype === 'F32') dv.setUint32(0, 0x7fc00000, true);
    else dv.setBigUint64(0, 0x7ff8000000000000n, true);
    return out;
  }
  switch (dtype) {
    case 'BF16':
      dv.setUint16(0, bitsFromF32(toBf16Value(v)) >>> 16, true);
      break;
    case 'F16': {
      const r = toF16Value(v);
      const sign = r < 0 || Object.is(r, -0) ? 0x8000 : 0;
      const a = Math.abs(r);
      let h: number;
      if (a === Infinity) h = 0x7c00;
      else if (a < 2 ** -14) h = a * 2 ** 24;
      else {
        const e = Math.floor(Math.log2(a));
        h = ((e + 15) << 10) | Math.round((a / 2 ** e - 1) * 1024);
      }
      dv.setUint16(0, sign | h, true);
      break;
    }
    case 'F32':
      dv.setFloat32(0, v, true);
      break;
    case 'F64':
      dv.setFloat64(0, v, true);
      break;
  }
  return out;
}

/** The contract for one element: acc = fma(w32[i], x_i, acc) oldest first, then the output dtype. */
export function mergeElement(xs: number[], w32: number[]): number {
  let acc = 0;
  for (let i = 0; i < xs.length; i++) acc = fmaf(w32[i] as number, Math.fround(xs[i] as number), acc);
  return acc;
}

/** Merges whole tensors (raw little-endian bytes) the way the contract says. */
export function mergeTensor(inDtype: string, outDtype: string, inputs: Uint8Array[], w32: number[]): Uint8Array {
  const size = inDtype === 'F64' ? 8 : inDtype === 'F32' ? 4 : 2;
  const n = (inputs[0]?.length ?? 0) / size;
  const outSize = outDtype === 'F64' ? 8 : outDtype === 'F32' ? 4 : 2;
  const out = new Uint8Array(n * outSize);
  for (let j = 0; j < n; j++) {
    const v = mergeElement(
      inputs.map((b) => decode(inDtype, b, j)),
      w32,
    );
    out.set(encode(outDtype, v), j * outSize);
  }
  return out;
}
