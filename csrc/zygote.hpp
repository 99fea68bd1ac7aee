// The zygote: a small single-threaded process (a fresh interpreter that loaded only this
// extension) that owns every running sandbox. It reads run requests from the Python process
// over a socket, keeps at most `max_concurrency` runs going, and writes results back.
//
// Why a separate process and not a thread of the caller: fork() of a multi-GB trainer copies
// its page tables on every run; a ~10 MB zygote forks in microseconds, is single-threaded
// (so namespace setns/unshare work and the children may allocate), and dies cleanly with
// all its runs when the caller goes away (EOF on the socket).
#pragma once

namespace hf {

// Never returns. `fd`: the zygote's end of the socketpair; `base_dir`: the Sandbox's
// private directory (holds the template root mount point); `spares`: how many runs' inits to
// keep prepared ahead of their runs (0: each run prepares its own).
[[noreturn]] void zygote_main(int fd, const char* base_dir, int max_concurrency, int spares);

}  // namespace hf
