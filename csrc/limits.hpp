// Resource limits of one run, applied in the child between fork and exec.
#pragma once

#include "protocol.hpp"

namespace hf {

// Applies every rlimit of `l`; returns nullptr, or the name of the limit that failed (errno set).
// Async-signal-safe. `per_run_nproc` is false where RLIMIT_NPROC would count every process
// of the calling user (no user namespace, not root): then it is left alone, as reported.
const char* apply_rlimits(const Limits& l, bool per_run_nproc);

// CPU seconds after which the kernel sends SIGXCPU (RLIMIT_CPU has whole-second granularity).
long cpu_rlimit_seconds(const Limits& l);

}  // namespace hf
