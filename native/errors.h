// Failures raised by the engine. The codes are the ones src/errors.ts knows; addon.cc turns an
// EngineError into a JS error carrying code, file and tensor, and src/native.ts into a PmaError.
#pragma once
#include <stdexcept>
#include <string>

namespace pma {

inline constexpr const char* kCodeIo = "E_IO";
inline constexpr const char* kCodeInput = "E_INPUT";
inline constexpr const char* kCodeInternal = "E_INTERNAL";

struct EngineError : std::runtime_error {
  std::string code;
  std::string file;
  std::string tensor;
  EngineError(std::string code_, const std::string& message, std::string file_ = {},
              std::string tensor_ = {})
      : std::runtime_error(message), code(std::move(code_)), file(std::move(file_)),
        tensor(std::move(tensor_)) {}
};

}  // namespace pma
