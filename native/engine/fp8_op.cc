// A band of a block-scaled FP8 tensor: each checkpoint's codes are dequantised with their block
// scales and accumulated with the golden fma order, then written dequantised (a float dtype) or
// requantised with fresh block scales (docs/contract.md, "FP8"). The element arithmetic is
// kernels/fp8.h; the loops here are compiled for the baseline, AVX2 and AVX-512 and chosen by the
// chunk's kernel, so every kernel runs the same operations in the same order.
#include <algorithm>
#include <limits>

#include "engine/chunk.h"
#include "engine/faults.h"
#include "engine/output_writer.h"
#include "engine/read_ahead.h"
#include "kernels/element.h"
#include "kernels/fp8.h"

namespace pma {
namespace {

constexpr size_t kBlockElems = size_t(1) << 16;

// Calls f(offset, count, block) for the spans of elements [first, first + m) of the band that
// share one block: each ends at a row's end or a block column's. `block` indexes the band's scale
// grid (always 0 for a tensor without scales, whose one "scale" is 1).
template <typename F>
inline void for_blocks(const Fp8Band& b, uint64_t first, size_t m, F&& f) {
  if (m == 0) return;
  // Divisions once, for the first element; then the walk advances row, column and block by
  // addition (a division per span cost a fifth of the arithmetic of 128-wide blocks).
  const uint64_t sc = b.scale_cols();
  const uint64_t rb0 = b.row0 / b.block_rows;
  uint64_t r = first / b.cols, c = first % b.cols;
  uint64_t in_block_rows = (b.row0 + r) % b.block_rows;  // rows into the current block row
  uint64_t row_block = ((b.row0 + r) / b.block_rows - rb0) * sc;
  uint64_t cb = c / b.block_cols, block_end = std::min(b.cols, (cb + 1) * b.block_cols);
  for (size_t at = 0; at < m;) {
    const size_t n = size_t(std::min<uint64_t>(m - at, block_end - c));
    f(at, n, size_t(row_block + cb));
    at += n;
    c += n;
    if (c == block_end) {
      if (c == b.cols) {
        c = 0;
        cb = 0;
        if (++in_block_rows == b.block_rows) {
          in_block_rows = 0;
          row_block += sc;
        }
      } else {
        ++cb;
      }
      block_end = std::min(b.cols, (cb + 1) * b.block_cols);
    }
  }
}

inline bool nonfinite_bits(float x) { return (f32_bits(x) & 0x7F800000u) == 0x7F800000u; }

// The loops below are compiled three times, for the baseline, AVX2 and AVX-512, by calling their
// always-inline bodies from functions with those targets; Work::run<F> is the body.
template <typename Work, Fp8 F, typename... A>
void on_base(A... a) {
  Work::template run<F>(a...);
}
template <typename Work, Fp8 F, typename... A>
__attribute__((target("avx2,fma"))) void on_avx2(A... a) {
  Work::template run<F>(a...);
}
template <typename Work, Fp8 F, typename... A>
__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) void on_avx512(A... a) {
  Work::template run<F>(a...);
}

// Work::run<F>(a...) compiled for kernel k and the band's FP8 format.
template <typename Work, typename... A>
void on_kernel(Kernel k, Fp8 f, A... a) {
  const bool e4 = f == Fp8::E4M3;
  switch (k) {
    case Kernel::Avx512: return e4 ? on_avx512<Work, Fp8::E4M3>(a...) : on_avx512<Work, Fp8::E5M2>(a...);
    case Kernel::Avx2: return e4 ? on_avx2<Work, Fp8::E4M3>(a...) : on_avx2<Work, Fp8::E5M2>(a...);
    case Kernel::Scalar: break;
  }
  return e4 ? on_base<Work, Fp8::E4M3>(a...) : on_base<Work, Fp8::E5M2>(a...);
}

// Checkpoints accumulated per pass over a block: each pass reads and writes the accumulators
// once, so the fewer passes the less traffic, and the compiler keeps four inputs in registers.
constexpr size_t kGroup = 4;

// `count` checkpoints (1 to kGroup) of one pass: their codes at the block's first element, their
// scales for the band, weights, and where their counts of NaN and infinite values go.
struct Group {
  size_t count = 0;
  const uint8_t* q[kGroup] = {};
  const float* scales[kGroup] = {};
  float w[kGroup] = {};
  uint64_t nonfinite[kGroup] = {};
  // The pass need not count: every scale is finite and small enough that only a NaN or infinite
  // code dequantises to a non-finite value, and the caller counts those codes in the bytes.
  bool codes_tell = false;
};

// acc[j] = fma(w_k, dequantise(q_k[j]), acc[j]) for the group's checkpoints in order, over
// elements [first, first + m) of the band (acc and the codes start at `first`). `fresh`: the
// group holds the oldest checkpoint, and the accumulators start at +0 instead of being read.
struct Accumulate {
  template <Fp8 F, size_t G, bool Fresh, bool Count>
  [[gnu::always_inline]] static inline void pass(const Fp8Band* b, uint64_t first, size_t m, Group* g, float* acc) {
    for_blocks(*b, first, m, [b, g, acc](size_t at, size_t n, size_t i) {
      float s[G], w[G];
      const uint8_t* src[G];
      uint32_t c[G];  // 32-bit lanes: a span is at most a row
      for (size_t k = 0; k < G; ++k) {
        s[k] = g->scales[k][i];
        w[k] = g->w[k];
        src[k] = g->q[k] + at;
        c[k] = 0;
      }
      float* __restrict dst = acc + at;
      for (size_t j = 0; j < n; ++j) {
        float a = Fresh ? 0.0f : dst[j];
        for (size_t k = 0; k < G; ++k) {
          const float x = fp8_dequantise(src[k][j], F, s[k]);
          if (Count) c[k] += nonfinite_bits(x);
          a = fma32(w[k], x, a);
        }
        dst[j] = a;
      }
      for (size_t k = 0; k < G; ++k) g->nonfinite[k] += c[k];
    });
  }

  template <Fp8 F>
  [[gnu::always_inline]] static inline void run(const Fp8Band* b, uint64_t first, size_t m, Group* g, float* acc,
                                                bool fresh) {
    if (g->codes_tell) {
      if (fresh) return run_n<F, true, false>(b, first, m, g, acc);
      return run_n<F, false, false>(b, first, m, g, acc);
    }
    if (fresh) return run_n<F, true, true>(b, first, m, g, acc);
    run_n<F, false, true>(b, first, m, g, acc);
  }

  template <Fp8 F, bool Fresh, bool Count>
  [[gnu::always_inline]] static inline void run_n(const Fp8Band* b, uint64_t first, size_t m, Group* g, float* acc) {
    switch (g->count) {
      case 1: return pass<F, 1, Fresh, Count>(b, first, m, g, acc);
      case 2: return pass<F, 2, Fresh, Count>(b, first, m, g, acc);
      case 3: return pass<F, 3, Fresh, Count>(b, first, m, g, acc);
      default: return pass<F, 4, Fresh, Count>(b, first, m, g, acc);
    }
  }
};

// The largest finite |x| of a span, 0 if none: non-negative floats order as their bits do (as
// signed integers too, which the compiler vectorises), and NaN and infinity take no part.
[[gnu::always_inline]] inline uint32_t amax_bits(const float* __restrict x, size_t n) {
  int32_t m = 0;
  for (size_t j = 0; j < n; ++j) {
    const int32_t bits = int32_t(f32_bits(x[j]) & 0x7FFFFFFFu);
    const int32_t v = bits < 0x7F800000 ? bits : 0;
    m = v > m ? v : m;
  }
  return uint32_t(m);
}

// Requantises a whole band, block by block: the new scales (amax / the format's largest, stored
// in the scale dtype) into `scale_out`, the codes into `q`. `amax` holds one value per block.
// The lambdas capture by value: a byte store through `q` may alias anything, a captured
// reference included, and the loops would reload their pointers on every element.
struct Requantise {
  template <Fp8 F>
  [[gnu::always_inline]] static inline void run(const Fp8Band* b, const float* acc, float* amax, uint8_t* q,
                                                uint8_t* scale_out) {
    const size_t blocks = size_t(b->scale_count());
    std::fill(amax, amax + blocks, 0.0f);
    for_blocks(*b, 0, size_t(b->elements()), [acc, amax](size_t at, size_t n, size_t i) {
      const uint32_t m = amax_bits(acc + at, n);
      if (m > f32_bits(amax[i])) amax[i] = bits_f32(m);
    });
    for (size_t i = 0; i < blocks; ++i) {
      store_f32(scale_out, b->scale, i, amax[i] / fp8_max(F));
      amax[i] = load_f32(scale_out, b->scale, i);  // the scale as stored is the one the codes use
    }
    for_blocks(*b, 0, size_t(b->elements()), [acc, amax, q](size_t at, size_t n, size_t i) {
      const float* __restrict x = acc + at;
      uint8_t* __restrict dst = q + at;
      const float s = amax[i];
      if (s > 0.0f) {
        for (size_t j = 0; j < n; ++j) dst[j] = fp8_quantise(x[j], s, F);
      } else {
        for (size_t j = 0; j < n; ++j) dst[j] = f32_to_fp8(x[j], F);
      }
    });
  }
};

// A block of a band written without new scales: in a float dtype (the contract's store_f32,
// with the dtype fixed for each loop so that it vectorises), or as FP8 codes (a tensor without
// scales).
template <DType T>
[[gnu::always_inline]] inline void store_as_dtype(const float* __restrict acc, size_t m, uint8_t* __restrict out) {
  for (size_t j = 0; j < m; ++j) store_f32(out, T, j, acc[j]);
}

struct Store {
  template <Fp8 F>
  [[gnu::always_inline]] static inline void run(bool codes, DType t, const float* __restrict acc, size_t m,
                                                uint8_t* __restrict out) {
    if (codes) {
      for (size_t j = 0; j < m; ++j) out[j] = f32_to_fp8(acc[j], F);
      return;
    }
    switch (t) {
      case DType::BF16: return store_as_dtype<DType::BF16>(acc, m, out);
      case DType::F16: return store_as_dtype<DType::F16>(acc, m, out);
      case DType::F32: return store_as_dtype<DType::F32>(acc, m, out);
      case DType::F64: return store_as_dtype<DType::F64>(acc, m, out);
    }
  }
};

// NaN and infinite codes among m bytes (m < 2^32): E4M3 S.1111.111, E5M2 S.11111.xx.
struct SpecialCodes {
  template <Fp8 F>
  [[gnu::always_inline]] static inline void run(const uint8_t* __restrict q, size_t m, uint64_t* count) {
    constexpr uint8_t mask = F == Fp8::E4M3 ? 0x7F : 0x7C;
    uint32_t c = 0;
    for (size_t j = 0; j < m; ++j) c += (q[j] & mask) == mask;
    *count = c;
  }
};

// Whether a checkpoint's scales let the codes tell which values are non-finite: every scale
// finite, and |scale| * the format's largest still finite (so a finite code's value is).
bool codes_tell(const float* scales, size_t n, Fp8 f) {
  const float limit = std::numeric_limits<float>::max() / fp8_max(f);
  for (size_t i = 0; i < n; ++i) {
    if (!(scales[i] <= limit && scales[i] >= -limit)) return false;  // NaN fails both
  }
  return true;
}

}  // namespace

void fp8_load_scales(const Op& op, size_t k, ReadAhead& in, std::vector<uint8_t>& raw, float* out) {
  const Fp8Band& b = op.fp8;
  if (!b.scaled) {
    out[0] = 1.0f;
    return;
  }
  const size_t n = size_t(b.scale_count()), size = dtype_size(b.scale);
  grow(raw, n * size, op.tensor);
  in.read(b.scales.at(k).file, raw.data(), n * size, b.scales[k].offset, op.tensor);
  for (size_t i = 0; i < n; ++i) out[i] = load_f32(raw.data(), b.scale, i);
}

uint64_t fp8_dequantise_block(const Op& op, uint64_t first, size_t m, const float* scales, const uint8_t* q,
                              float* out) {
  uint64_t nf = 0;
  for_blocks(op.fp8, first, m, [&](size_t at, size_t n, size_t i) {
    for (size_t j = at; j < at + n; ++j) {
      out[j] = fp8_dequantise(q[j], op.fp8.in, scales[i]);
      nf += nonfinite_bits(out[j]);
    }
  });
  return nf;
}

void fp8_op(const ChunkSpec& spec, uint32_t op_index, const Op& op, ReadAhead& in, OutputWriter& out, Scratch& s,
            ChunkStats& st) {
  const Fp8Band& b = op.fp8;
  const size_t n = op.inputs.size();
  const uint64_t band = b.elements();
  const size_t per = b.scaled ? size_t(b.scale_count()) : 1;
  maybe_fail_alloc(op.tensor);
  s.scales.resize(n * per);
  for (size_t k = 0; k < n; ++k) fp8_load_scales(op, k, in, s.out, s.scales.data() + k * per);
  std::vector<bool> tame(n);
  for (size_t k = 0; k < n; ++k) tame[k] = codes_tell(s.scales.data() + k * per, per, b.in);
  // New block scales need every value of a block first: the band is accumulated whole (it spans
  // whole block rows), otherwise block by block.
  const bool whole = b.requantise && b.scaled;
  const size_t os = b.requantise ? 1 : dtype_size(op.out);
  s.acc.resize(whole ? size_t(band) : size_t(std::min<uint64_t>(band, kBlockElems)));
  if (s.in.size() < n) s.in.resize(n);
  for (size_t k = 0; k < n; ++k) grow(s.in[k], kBlockElems, op.tensor);
  const size_t scale_bytes = size_t(fp8_scale_out_bytes(op));
  grow(s.out, whole ? size_t(band) + scale_bytes : kBlockElems * os, op.tensor);
  for (uint64_t done = 0; done < band;) {
    check_cancel(spec.cancel, op);
    const size_t m = size_t(std::min<uint64_t>(kBlockElems, band - done));
    float* acc = s.acc.data() + (whole ? done : 0);
    for (size_t k0 = 0; k0 < n; k0 += kGroup) {
      Group g;
      g.count = std::min(kGroup, n - k0);
      g.codes_tell = true;
      for (size_t k = 0; k < g.count; ++k) {
        in.read(op.inputs[k0 + k].file, s.in[k0 + k].data(), m, op.inputs[k0 + k].offset + done, op.tensor);
        g.q[k] = s.in[k0 + k].data();
        g.scales[k] = s.scales.data() + (k0 + k) * per;
        g.w[k] = spec.w32[k0 + k];
        g.codes_tell = g.codes_tell && tame[k0 + k];
      }
      on_kernel<Accumulate>(spec.kernel, b.in, &b, done, m, &g, acc, k0 == 0);
      for (size_t k = 0; k < g.count; ++k) {
        uint64_t nf = g.nonfinite[k];
        if (g.codes_tell) on_kernel<SpecialCodes>(spec.kernel, b.in, g.q[k], m, &nf);
        note_nonfinite(st, op_index, uint32_t(k0 + k), nf);
      }
    }
    if (!whole) {
      on_kernel<Store>(spec.kernel, b.in, b.requantise, op.out, static_cast<const float*>(acc), m, s.out.data());
      out.write(op.out_file, op.out_offset + done * os, s.out.data(), m * os, op.tensor);
    }
    st.bytes_read += uint64_t(m) * n;
    done += m;
  }
  st.bytes_read += uint64_t(n) * per * (b.scaled ? dtype_size(b.scale) : 0);
  st.bytes_written += band * os;
  if (whole) {
    std::vector<float>& amax = s.scales;  // the checkpoints' scales are no longer needed
    amax.resize(size_t(b.scale_count()));
    on_kernel<Requantise>(spec.kernel, b.in, &b, static_cast<const float*>(s.acc.data()), amax.data(), s.out.data(),
                          s.out.data() + band);
    out.write(op.out_file, op.out_offset, s.out.data(), size_t(band), op.tensor);
    // Not marked completed: starting the writeback of a few bytes would break up the codes' run,
    // and the next band's scales, in the same page, would then wait for that page's writeback.
    out.write(b.scale_out_file, b.scale_out_offset, s.out.data() + band, scale_bytes, op.tensor);
    st.bytes_written += scale_bytes;
  }
}

}  // namespace pma
