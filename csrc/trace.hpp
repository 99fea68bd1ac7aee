// Per-step timing of a run's set-up, for finding where launch time goes.
// HALO_SANDBOX_TRACE=1 in the caller's environment: the init and the program (before execve)
// stamp each step into a log in the memory they share with the zygote (no syscall, so tracing
// does not wake the zygote and move the times it measures); the zygote reads the log once the
// init has reported, and prints the mean time per step to stderr when it exits. Off: one branch.
#pragma once

#include <cstdint>

namespace hf {

extern bool g_trace;
int64_t mono_ns();

struct TraceLog {
    static constexpr int kMax = 24;
    int n = 0;
    struct {
        const char* step;  // a string literal
        int64_t ns;        // CLOCK_MONOTONIC when the step ended
    } e[kMax];
};

// `step` just ended. `log` is null when tracing is off.
inline void trace_point(TraceLog* log, const char* step) {
    if (!log || log->n >= TraceLog::kMax) return;
    log->e[log->n].step = step;
    log->e[log->n].ns = mono_ns();
    ++log->n;
}

}  // namespace hf
