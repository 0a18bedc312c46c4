#include "engine/sigbus_guard.h"

#include <csetjmp>
#include <csignal>
#include <mutex>

namespace pma {
namespace {

// Set only while this thread runs guarded work. It is touched on the normal path first, so the
// thread's TLS block exists before a handler ever reads it.
thread_local sigjmp_buf* t_escape = nullptr;
struct sigaction g_previous;

void on_sigbus(int sig, siginfo_t* info, void* uc) {
  // si_code > 0: raised by the kernel for a faulting access, not sent by kill().
  const bool fault = info != nullptr && info->si_code > 0;
  if (t_escape != nullptr && fault) siglongjmp(*t_escape, 1);
  // Not a guarded load: behave as if this handler had never been installed, except that a fault
  // cannot be ignored (returning would retry the same load forever): it ends the process.
  if ((g_previous.sa_flags & SA_SIGINFO) && g_previous.sa_sigaction != nullptr) {
    g_previous.sa_sigaction(sig, info, uc);
    return;
  }
  if (!(g_previous.sa_flags & SA_SIGINFO) && g_previous.sa_handler == SIG_IGN && !fault) return;
  if ((g_previous.sa_flags & SA_SIGINFO) || g_previous.sa_handler == SIG_DFL || g_previous.sa_handler == SIG_IGN) {
    ::signal(SIGBUS, SIG_DFL);
    ::raise(SIGBUS);
    return;
  }
  g_previous.sa_handler(sig);
}

void install() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGBUS, &sa, &g_previous);
  });
}

}  // namespace

bool run_sigbus_guarded(void (*fn)(void*), void* ctx) {
  install();
  sigjmp_buf escape;
  // savemask=1: the jump back also unblocks SIGBUS, which the kernel blocked for the handler.
  if (sigsetjmp(escape, 1) != 0) {
    t_escape = nullptr;
    return false;
  }
  t_escape = &escape;
  try {
    fn(ctx);
  } catch (...) {
    t_escape = nullptr;
    throw;
  }
  t_escape = nullptr;
  return true;
}

}  // namespace pma
