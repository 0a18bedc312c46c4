#include "engine/output_hash.h"

#include <openssl/evp.h>

#include <algorithm>
#include <new>

#include "engine/stopwatch.h"
#include "errors.h"
#include "kernels/crc32.h"

namespace pma {

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr) throw std::bad_alloc();
  if (EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr) != 1) {
    EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_));
    throw EngineError(kCodeInternal, "native: OpenSSL's SHA-256 did not start");
  }
}

Sha256::~Sha256() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void Sha256::update(const uint8_t* p, size_t n) {
  if (n > 0 && EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), p, n) != 1) {
    throw EngineError(kCodeInternal, "native: OpenSSL's SHA-256 failed");
  }
}

std::string Sha256::hex() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), md, &len) != 1) {
    throw EngineError(kCodeInternal, "native: OpenSSL's SHA-256 failed");
  }
  static const char digits[] = "0123456789abcdef";
  std::string out(size_t(len) * 2, '0');
  for (unsigned int i = 0; i < len; ++i) {
    out[2 * i] = digits[md[i] >> 4];
    out[2 * i + 1] = digits[md[i] & 15];
  }
  return out;
}

bool parse_checksum(const std::string& name, Checksum* out) {
  if (name == "blake3") {
    *out = Checksum::Blake3;
  } else if (name == "sha256") {
    *out = Checksum::Sha256;
  } else {
    return false;
  }
  return true;
}

Digest::Digest(Checksum c) {
  if (c == Checksum::Blake3) {
    blake3_ = std::make_unique<Blake3>();
  } else {
    sha256_ = std::make_unique<Sha256>();
  }
}

void Digest::update(const uint8_t* p, size_t n) {
  if (blake3_) {
    blake3_->update(p, n);
  } else {
    sha256_->update(p, n);
  }
}

std::string Digest::hex() { return blake3_ ? blake3_->hex() : sha256_->hex(); }

namespace {

uint8_t* block(std::vector<uint8_t>& buf) {
  if (buf.size() < kHashBlock) buf.resize(kHashBlock);
  return buf.data();
}

}  // namespace

const File& OutputFileHash::file() {
  if (!file_) file_ = std::make_unique<File>(File::open_existing(path_, writable_, "cannot hash the output"));
  return *file_;
}

HashSeconds OutputFileHash::update(uint64_t from, uint64_t to, std::vector<MemberCrc>& crcs, bool drop,
                                   std::vector<uint8_t>& buf, DirectWrites* held) {
  const File& f = file();
  if (held && writable_) held->forget_held(path_, from, to);
  if (writable_) held = nullptr;
  uint8_t* b = block(buf);
  HashSeconds s;
  for (uint64_t pos = from; pos < to;) {
    const uint64_t t0 = now_ns();
    const uint8_t* p = b;
    size_t n = 0;
    const DirectBufferPtr kept = held ? held->take_held(path_, pos, &p, &n) : nullptr;
    if (kept && n > to - pos) {  // not a range this request covers whole: read it back
      p = b;
      n = 0;
    }
    if (n == 0) {
      const uint64_t stop = std::min(to, held ? held->next_held(path_, pos) : UINT64_MAX);
      n = f.read_some(b, size_t(std::min<uint64_t>(kHashBlock, stop - pos)), pos, {});
    }
    const uint64_t t1 = now_ns();
    s.read_ns += t1 - t0;
    if (n == 0) {
      throw EngineError(kCodeIo,
                        "cannot hash the output " + path_ + ": it ends at " + std::to_string(pos) + ", expected " +
                            std::to_string(to) + " bytes",
                        path_);
    }
    digest_.update(p, n);
    const uint64_t end = pos + n;
    for (MemberCrc& m : crcs) {
      if (m.end <= pos || m.start >= end) continue;
      const uint64_t a = std::max(m.start, pos), z = std::min(m.end, end);
      m.crc = crc32(m.crc, p + (a - pos), size_t(z - a));
    }
    s.update_ns += now_ns() - t1;
    pos = end;
  }
  if (drop && to > from) f.drop(from, to - from);
  return s;
}

uint32_t OutputFileHash::crc(uint64_t start, uint64_t end, std::vector<uint8_t>& buf) {
  const File& f = file();
  uint8_t* b = block(buf);
  uint32_t c = 0;
  for (uint64_t at = start; at < end;) {
    const size_t n = f.read_some(b, size_t(std::min<uint64_t>(kHashBlock, end - at)), at, {});
    if (n == 0) {
      throw EngineError(kCodeIo, "cannot read back the output " + path_ + ": it ends at " + std::to_string(at), path_);
    }
    c = crc32(c, b, n);
    at += n;
  }
  return c;
}

void OutputFileHash::put(uint64_t at, uint32_t value) {
  const uint8_t le[4] = {uint8_t(value), uint8_t(value >> 8), uint8_t(value >> 16), uint8_t(value >> 24)};
  file().write_at(le, 4, at, {});
}

std::string OutputFileHash::digest(DirectWrites* held) {
  if (held) held->forget_held(path_, 0, UINT64_MAX);
  file();  // a file never read is still opened: a missing one is an error, not the empty digest
  file_.reset();
  return digest_.hex();
}

std::string hash_file(const std::string& path, Checksum checksum, std::vector<uint8_t>& buf) {
  const File f = File::open_existing(path, false, "cannot read");
  uint8_t* b = block(buf);
  Digest sha(checksum);
  for (uint64_t pos = 0;;) {
    const size_t n = f.read_some(b, kHashBlock, pos, {});
    if (n == 0) break;
    sha.update(b, n);
    pos += n;
  }
  return sha.hex();
}

}  // namespace pma
