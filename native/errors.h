// Failures raised by the engine. addon.cc turns an EngineError into a JS error carrying code, file
// and tensor, and src/native.ts into a PmaError.
//
// Every code the native code raises is named here, and only here: each must be a key of
// ERROR_CODES in src/errors.ts (test/native/error-codes.test.ts checks both).
#pragma once
#include <stdexcept>
#include <string>
#include <utility>

namespace pma {

// Reading or writing a file failed (other than for want of space).
inline constexpr const char* kCodeIo = "E_IO";
// An input is unusable: shorter than its header says, or cut short while mapped.
inline constexpr const char* kCodeInput = "E_INPUT";
// A bug in pma: a chunk or argument the TypeScript side should never have sent.
inline constexpr const char* kCodeInternal = "E_INTERNAL";
// An allocation failed (host memory, pinned memory or device memory).
inline constexpr const char* kCodeNoMem = "E_NOMEM";
// Writing an output failed for want of space (ENOSPC) or quota (EDQUOT).
inline constexpr const char* kCodeNoSpace = "E_NOSPACE";
// The request needs something this build or CPU lacks (a kernel, CUDA).
inline constexpr const char* kCodeUnsupported = "E_UNSUPPORTED";
// The GPU or its driver failed.
inline constexpr const char* kCodeDevice = "E_DEVICE";
// The chunk's cancel flag was set.
inline constexpr const char* kCodeAborted = "E_ABORTED";

struct EngineError : std::runtime_error {
  std::string code;
  std::string file;
  std::string tensor;
  EngineError(std::string code_, const std::string& message, std::string file_ = {}, std::string tensor_ = {})
      : std::runtime_error(message), code(std::move(code_)), file(std::move(file_)), tensor(std::move(tensor_)) {}
};

}  // namespace pma
