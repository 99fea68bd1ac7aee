#include "verdict.hpp"

#include "limits.hpp"

#include <csignal>
#include <cstring>
#include <sys/wait.h>

namespace hf {

namespace {

// RLIMIT_AS makes allocations fail rather than kill: recognise the usual ways a program
// dies of that (a resident set near the limit, or a runtime's out-of-memory message).
bool out_of_memory(const RunResult& r, const Limits& l) {
    if (l.memory_mb > 0 && r.peak_memory_kb >= l.memory_mb * 1024 * 8 / 10) return true;
    static const char* markers[] = {"std::bad_alloc", "memory allocation of", "MemoryError",
                                    "Cannot allocate memory", "out of memory", "Out of memory",
                                    "virtual memory exhausted"};
    for (const char* m : markers)
        if (r.err.find(m) != std::string::npos) return true;
    return false;
}

}  // namespace

void judge(RunResult& res, const ChildReport& last, Kill killed, const Limits& l, const std::string& exe) {
    if (last.kind == kSetupFailed || last.kind == kExecFailed) {
        res.status = Status::SandboxError;
        res.error = std::string(last.kind == kSetupFailed ? "sandbox setup: " : "starting the program: ") +
                    last.step + ": " + std::strerror(last.err);
        if (last.kind == kExecFailed && std::strcmp(last.step, "execve") == 0)
            res.error = "execve " + exe + ": " + std::strerror(last.err);
        return;
    }
    switch (killed) {
        case Kill::Wall: res.status = Status::Timeout; res.signal = SIGKILL; return;
        case Kill::Output: res.status = Status::OutputLimit; res.signal = SIGKILL; return;
        case Kill::Cancel: res.status = Status::SandboxError; res.error = "cancelled"; return;
        case Kill::Shutdown: res.status = Status::SandboxError; res.error = "sandbox closed"; return;
        case Kill::None: break;
    }
    if (last.kind != kDone) {
        res.status = Status::SandboxError;
        res.error = "the run's init process died without a report";
        return;
    }
    int st = last.value;
    if (WIFEXITED(st)) {
        res.exited = true;
        res.exit_code = WEXITSTATUS(st);
        res.status = res.exit_code == 0 ? Status::Ok : Status::RuntimeError;
    } else {
        res.signal = WTERMSIG(st);
        res.status = Status::RuntimeError;
        if (res.signal == SIGXCPU || (res.signal == SIGKILL && res.cpu_s >= double(cpu_rlimit_seconds(l)) - 0.05))
            res.status = Status::Timeout;
        else if (res.signal == SIGXFSZ)
            res.status = Status::OutputLimit;
    }
    if (res.cpu_s > l.cpu_s && res.status != Status::OutputLimit) res.status = Status::Timeout;
    // A compiler driver (gcc, g++) reports its child's SIGXCPU as an exit code of its own.
    if (res.status == Status::RuntimeError &&
        (res.cpu_s >= double(cpu_rlimit_seconds(l)) - 0.1 ||
         res.err.find("CPU time limit exceeded") != std::string::npos))
        res.status = Status::Timeout;
    if (res.status == Status::RuntimeError && out_of_memory(res, l)) res.status = Status::MemoryLimit;
    // Writes failed with ENOSPC: the program may have coped (exit 0) or not; either way it
    // produced more than a run may keep.
    if ((last.err & kDiskFull) && (res.status == Status::Ok || res.status == Status::RuntimeError))
        res.status = Status::OutputLimit;
}

}  // namespace hf
