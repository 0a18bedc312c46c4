#include "engine/faults.h"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

namespace pma {
namespace {

struct Rule {
  FaultSite site;
  int err;
  std::string target;
  uint64_t after;
  std::atomic<uint64_t> seen{0};
};

struct Rules {
  std::vector<std::unique_ptr<Rule>> list;
};

struct ErrnoName {
  const char* name;
  int value;
};

int errno_named(const std::string& s) {
  static const ErrnoName known[] = {{"EIO", EIO},       {"ENOSPC", ENOSPC},        {"ENOMEM", ENOMEM}, {"EFBIG", EFBIG},
                                    {"EDQUOT", EDQUOT}, {"EACCES", EACCES},        {"EROFS", EROFS},   {"ENXIO", ENXIO},
                                    {"EAGAIN", EAGAIN}, {"EOPNOTSUPP", EOPNOTSUPP}};
  for (const auto& k : known) {
    if (s == k.name) return k.value;
  }
  return EIO;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t at = s.find(sep, start);
    out.push_back(s.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) return out;
    start = at + 1;
  }
}

// Malformed rules are ignored: this is a test switch, not a user interface.
Rules* parse(const char* spec) {
  auto* rules = new Rules;
  for (const std::string& item : split(spec, ',')) {
    const std::vector<std::string> f = split(item, ':');
    if (f.size() < 3 || f.size() > 4) continue;
    FaultSite site;
    if (f[0] == "read") site = FaultSite::Read;
    else if (f[0] == "write") site = FaultSite::Write;
    else if (f[0] == "sync") site = FaultSite::Sync;
    else if (f[0] == "map") site = FaultSite::Map;
    else if (f[0] == "alloc") site = FaultSite::Alloc;
    else if (f[0] == "reserve") site = FaultSite::Reserve;
    else continue;
    auto r = std::make_unique<Rule>();
    r->site = site;
    r->err = errno_named(f[1]);
    r->target = f[2];
    r->after = f.size() == 4 ? std::strtoull(f[3].c_str(), nullptr, 10) : 0;
    rules->list.push_back(std::move(r));
  }
  return rules;
}

std::atomic<Rules*> g_rules{nullptr};
std::once_flag g_once;

// Process-wide on purpose: the workers of one merge share the counters, so "after" counts calls
// of the whole merge. Never freed: workers may still be reading it at exit.
Rules* rules() {
  std::call_once(g_once, [] {
    const char* spec = std::getenv("PMA_FAULTS");
    if (spec != nullptr && *spec != '\0') g_rules.store(parse(spec), std::memory_order_release);
  });
  return g_rules.load(std::memory_order_acquire);
}

}  // namespace

int injected_fault(FaultSite site, const std::string& target) {
  Rules* rs = rules();
  if (rs == nullptr) return 0;
  for (auto& r : rs->list) {
    if (r->site != site || target.find(r->target) == std::string::npos) continue;
    if (r->seen.fetch_add(1, std::memory_order_relaxed) >= r->after) return r->err;
  }
  return 0;
}

void maybe_fail_alloc(const std::string& tensor) {
  if (injected_fault(FaultSite::Alloc, tensor) != 0) throw std::bad_alloc();
}

}  // namespace pma
