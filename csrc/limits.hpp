// Resource limits of one run, applied in the child between fork and exec.
#pragma once

#include "protocol.hpp"

#include <sys/resource.h>

namespace hf {

struct RlimitSet {
    int resource;
    const char* name;
    rlim_t soft, hard;
};

// The rlimits of a run, in the order they are set: the program's process applies them
// (apply_rlimits), the warm Python template's fork gets the same list. A fixed array: the
// program's process shares the zygote's memory and must not allocate.
struct RlimitPlan {
    RlimitSet set[12];
    int n = 0;
};
RlimitPlan rlimit_plan(const Limits& l, bool per_run_nproc);

// Applies every rlimit of `l`; returns nullptr, or the name of the limit that failed (errno set).
// Async-signal-safe. `per_run_nproc` is false where RLIMIT_NPROC would count every process
// of the calling user (no user namespace, not root): then it is left alone, as reported.
const char* apply_rlimits(const Limits& l, bool per_run_nproc);

// CPU seconds after which the kernel sends SIGXCPU (RLIMIT_CPU has whole-second granularity).
long cpu_rlimit_seconds(const Limits& l);

}  // namespace hf
