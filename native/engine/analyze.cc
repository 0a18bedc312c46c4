#include "engine/analyze.h"

#include <algorithm>

#include "engine/file_table.h"
#include "engine/read_ahead.h"
#include "kernels/element.h"

namespace pma {
namespace {

constexpr size_t kBlock = size_t(1) << 14;

double dot(const double* a, const double* b, size_t m) {
  double s = 0;
  for (size_t j = 0; j < m; ++j) s += a[j] * b[j];
  return s;
}

void analyze_op(const ChunkSpec& spec, const Op& op, ReadAhead& in, OpMoments& r) {
  const size_t n = op.inputs.size();
  const size_t is = dtype_size(op.in);
  r.gram.assign(n > 1 ? (n - 1) * n / 2 : 0, 0.0);
  r.cross.assign(n > 0 ? n - 1 : 0, 0.0);
  r.count = op.count;
  if (n == 0) return;
  std::vector<uint8_t> raw(kBlock * is);
  std::vector<double> x0(kBlock), xn(kBlock);
  std::vector<std::vector<double>> e(n);
  for (uint64_t done = 0; done < op.count;) {
    check_cancel(spec, op);
    const size_t m = size_t(std::min<uint64_t>(kBlock, op.count - done));
    for (size_t k = 0; k < n; ++k) {
      in.read(op.inputs[k].file, raw.data(), m * is, op.inputs[k].offset + done * is, op.tensor);
      if (k == 0) {
        for (size_t j = 0; j < m; ++j) x0[j] = load_f64(raw.data(), op.in, j);
        continue;
      }
      e[k].resize(kBlock);
      for (size_t j = 0; j < m; ++j) e[k][j] = load_f64(raw.data(), op.in, j) - x0[j];
      if (k == n - 1) {
        for (size_t j = 0; j < m; ++j) xn[j] = load_f64(raw.data(), op.in, j);
      }
    }
    if (n == 1) std::copy(x0.begin(), x0.begin() + long(m), xn.begin());
    r.oldest_sq += dot(x0.data(), x0.data(), m);
    r.newest_sq += dot(xn.data(), xn.data(), m);
    size_t at = 0;
    for (size_t k = 1; k < n; ++k) {
      r.cross[k - 1] += dot(xn.data(), e[k].data(), m);
      for (size_t l = k; l < n; ++l) r.gram[at++] += dot(e[k].data(), e[l].data(), m);
    }
    done += m;
  }
}

}  // namespace

std::vector<OpMoments> analyze_chunk(const ChunkSpec& spec) {
  check_ops(spec);
  FileTable files(spec.inputs, false);
  ReadAhead in(files);
  std::vector<OpMoments> out(spec.ops.size());
  for (size_t i = 0; i < spec.ops.size(); ++i) {
    const Op& op = spec.ops[i];
    if (op.copy) continue;
    try {
      analyze_op(spec, op, in, out[i]);
    } catch (const std::bad_alloc&) {
      throw out_of_memory(spec, op);
    }
  }
  return out;
}

}  // namespace pma
