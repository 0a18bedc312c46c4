// Failures injected on request, so that tests can drive the error paths that real disks and
// allocators take rarely: EIO on a read or a write, a full disk, a refused mmap, a failed
// allocation.
//
// PMA_FAULTS (read once per process) is a comma-separated list of rules site:errno:target[:after]:
//   site    read | write | sync | map | alloc | reserve   (sync: the sync_file_range of written
//           output; reserve: the fallocate of a new output file)
//   errno   EIO, ENOSPC, ENOMEM, ... (a name from the list in faults.cc)
//   target  a substring of the file path (read, write, sync, map) or of the tensor name (alloc)
//   after   how many matching calls succeed first (default 0); every later match fails
// Unset, each call costs one check of an already-initialised flag.
#pragma once
#include <string>

namespace pma {

enum class FaultSite { Read = 0, Write = 1, Map = 2, Alloc = 3, Sync = 4, Reserve = 5 };

// The errno a call at `site` on `target` must fail with, or 0 to go ahead.
int injected_fault(FaultSite site, const std::string& target);

// Throws std::bad_alloc when an alloc rule matches the tensor.
void maybe_fail_alloc(const std::string& tensor);

}  // namespace pma
