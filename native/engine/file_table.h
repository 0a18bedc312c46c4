// The files a chunk names, opened on first use and closed with the chunk.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "engine/file_io.h"
#include "errors.h"

namespace pma {

class FileTable {
 public:
  FileTable(const std::vector<std::string>& paths, bool write)
      : paths_(paths), files_(paths.size()), direct_(paths.size()), tried_(paths.size()), write_(write) {}

  const File& get(uint32_t i) {
    check(i);
    if (!files_[i]) files_[i] = std::make_unique<File>(paths_[i], write_);
    return *files_[i];
  }

  const std::string& path(uint32_t i) const {
    check(i);
    return paths_[i];
  }
  // The O_DIRECT handle of an output, or nullptr where the filesystem refuses it.
  const File* direct(uint32_t i) {
    check(i);
    if (!tried_[i]) {
      tried_[i] = true;
      direct_[i] = File::open_direct(paths_[i]);
    }
    return direct_[i].get();
  }

 private:
  void check(uint32_t i) const {
    if (i >= files_.size()) throw EngineError(kCodeInternal, "file index out of range in chunk");
  }
  const std::vector<std::string>& paths_;
  std::vector<std::unique_ptr<File>> files_;
  std::vector<std::unique_ptr<File>> direct_;
  std::vector<bool> tried_;
  bool write_;
};

}  // namespace pma
