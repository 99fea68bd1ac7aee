// The record a run's init writes to the zygote over its report pipe: how far the run got, and
// how it ended. Written by spawn.cpp, read by the zygote, classified by verdict.cpp.
#pragma once

#include <cstdint>

namespace hf {

enum ReportKind : int32_t { kSetupFailed = 1, kExecFailed = 2, kStarted = 3, kDone = 4,
                         kWarmReady = 5 };  // the workdir is made: the warm template may fork into the run

// Fixed-size record written to the report pipe (atomic: smaller than PIPE_BUF).
struct ChildReport {
    int32_t kind;
    int32_t err;    // errno for failures; kDone: flags (kDiskFull)
    int32_t value;  // program pid (kStarted) or wait status (kDone)
    char step[52];  // name of the failed step
    int64_t cpu_us;     // kDone: CPU of the run (the init and everything it reaped)
    int64_t maxrss_kb;  // kDone: largest resident set among the run's processes
};

// kDone flag: the run's tmpfs (workdir, /tmp) ended full; its files were not copied back.
constexpr int32_t kDiskFull = 1;

}  // namespace hf
