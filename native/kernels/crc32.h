// CRC-32 as zip records it (reflected polynomial 0xEDB88320, initial and final inversion), the
// same value as zlib's crc32(): a DCP merge rewrites it for every zip member whose bytes it
// replaces, over all the averaged bytes, so it must not cost what the merge costs.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pma {

// The CRC-32 of `n` bytes at `p`, continuing from `crc` (0 to start), as zlib's crc32(crc, p, n).
// Carry-less multiplication (PCLMULQDQ) folds 64 bytes a step where the CPU has it; a table
// does the rest, and all of it elsewhere.
uint32_t crc32(uint32_t crc, const uint8_t* p, size_t n);

// Whether crc32() folds with PCLMULQDQ on this CPU.
bool crc32_folds();

}  // namespace pma
