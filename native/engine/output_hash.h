// The checksum (BLAKE3 or SHA-256) of output files, from the buffers the direct writes kept or
// read back from the page cache, in ranges as the merge finishes them (src/output/hasher.ts
// decides which ranges, and sends a file's ranges one at a time, in order), and the CRC-32 of a
// DCP output's rewritten zip members in the same pass. Runs on the chunk threads, so hashing
// shares the cores with the merge instead of competing with it.
//
// SHA-256 is OpenSSL's, the copy inside Node that every addon can link against (SHA-NI where the
// CPU has it): the same digest Node's crypto gives. BLAKE3 is kernels/blake3.h.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/direct_writes.h"
#include "engine/file_io.h"
#include "kernels/blake3.h"

namespace pma {

// A running SHA-256 (OpenSSL's EVP interface).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const uint8_t* p, size_t n);
  // The digest in lowercase hex; the object is spent.
  std::string hex();

 private:
  void* ctx_;  // EVP_MD_CTX, kept out of this header
};

// The checksums pma records in pma.json (src/output/checksum.ts names them).
enum class Checksum : uint8_t { Blake3, Sha256 };

// "blake3" or "sha256"; false for any other name.
bool parse_checksum(const std::string& name, Checksum* out);

// A running checksum of either kind.
class Digest {
 public:
  explicit Digest(Checksum c);
  void update(const uint8_t* p, size_t n);
  // The digest in lowercase hex; the object is spent.
  std::string hex();

 private:
  std::unique_ptr<Blake3> blake3_;
  std::unique_ptr<Sha256> sha256_;
};

// A zip member's running CRC-32, fed by the bytes of a pass that overlap [start, end).
struct MemberCrc {
  uint64_t start = 0;
  uint64_t end = 0;
  uint32_t crc = 0;
};

struct HashSeconds {
  uint64_t read_ns = 0;
  uint64_t update_ns = 0;
};

// Bytes read and hashed per step: a block read from the page cache is still in the core's L2
// cache when it is hashed (8 MiB blocks hashed measurably slower).
inline constexpr size_t kHashBlock = 256 * 1024;

// One output file hashed from its first byte to its last. Opened on first use; one request at a
// time (the caller's order is the file's order).
class OutputFileHash {
 public:
  OutputFileHash(std::string path, bool writable, Checksum checksum)
      : path_(std::move(path)), writable_(writable), digest_(checksum) {}

  // Hashes [from, to), feeding the CRC-32 of `crcs` (in order, not overlapping); with `drop`,
  // then drops the range from the page cache. A file that ends before `to` is E_IO.
  // Bytes that `held` kept when it wrote them (direct_writes.h) are hashed from memory, not read
  // back (never in a file whose CRC-32 fields are written: those bytes may have changed since).
  HashSeconds update(uint64_t from, uint64_t to, std::vector<MemberCrc>& crcs, bool drop, std::vector<uint8_t>& buf,
                     DirectWrites* held = nullptr);
  // The CRC-32 of [start, end) alone (a member whose CRC field comes before its bytes).
  uint32_t crc(uint64_t start, uint64_t end, std::vector<uint8_t>& buf);
  // Writes a CRC-32 field: 4 bytes little-endian at `at`.
  void put(uint64_t at, uint32_t value);
  // The file's checksum; closes it, and forgets what `held` kept of it.
  std::string digest(DirectWrites* held = nullptr);

 private:
  const File& file();

  std::string path_;
  bool writable_;
  std::unique_ptr<File> file_;
  Digest digest_;
};

// The checksum of a whole file (a companion file, pma verify, finalizing parts), hex.
std::string hash_file(const std::string& path, Checksum checksum, std::vector<uint8_t>& buf);

}  // namespace pma
