// Per-step timing of a run's set-up, for finding where launch time goes.
// HALO_SANDBOX_TRACE=1 in the caller's environment: the init and the program (before execve)
// stamp each step into a log in the memory they share with the zygote (no syscall, so tracing
// does not wake the zygote and move the times it measures); the zygote reads the log once the
// init has reported, and prints the mean time per step to stderr when it exits. Off: one branch.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

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

// The zygote's sums over every run, printed when it exits.
class TraceSummary {
public:
    using Steps = std::vector<std::pair<std::string, int64_t>>;  // (label, CLOCK_MONOTONIC ns)
    // One init's steps (the zygote's and its own, in any order; sorted here) into the sums.
    void add(Steps& steps);
    // The mean time per step, in the order a run meets them, and the part the caller waits for.
    void print() const;

private:
    // Per step: total time since the previous step, count, and total offset from the run's
    // arrival at the zygote (which orders the printout: spare set-up first, then the run).
    struct StepSum {
        double us = 0, offset_us = 0;
        long n = 0;
    };
    std::unordered_map<std::string, StepSum> sums_;
};

}  // namespace hf
