// Reading a mapped input that another process truncates raises SIGBUS, and so does a mapped page
// the disk cannot read; unhandled, either kills the whole process (every worker, the partial
// output's journal writer, the CLI's error report). Work on mapped memory runs under this guard,
// which turns the signal into a return value the caller reports as an error.
#pragma once

namespace pma {

// Runs fn(ctx) and returns true, or returns false if fn touched a mapped page that faulted with
// SIGBUS. fn must not own anything with a destructor: it is abandoned at the faulting load.
bool run_sigbus_guarded(void (*fn)(void*), void* ctx);

}  // namespace pma
