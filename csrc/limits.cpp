#include "limits.hpp"

#include <cmath>
#include <sys/resource.h>

namespace hf {

long cpu_rlimit_seconds(const Limits& l) {
    long s = long(std::ceil(l.cpu_s));
    return s < 1 ? 1 : s;
}

static bool set(int what, rlim_t soft, rlim_t hard) {
    struct rlimit r{soft, hard};
    return setrlimit(what, &r) == 0;
}

const char* apply_rlimits(const Limits& l, bool per_run_nproc) {
    const rlim_t mb = rlim_t(1) << 20;
    long cpu = cpu_rlimit_seconds(l);
    // SIGXCPU at the soft limit, SIGKILL one second later if the program catches it.
    if (!set(RLIMIT_CPU, rlim_t(cpu), rlim_t(cpu + 1))) return "RLIMIT_CPU";
    if (l.memory_mb > 0) {
        rlim_t bytes = rlim_t(l.memory_mb) * mb;
        if (!set(RLIMIT_AS, bytes, bytes)) return "RLIMIT_AS";
        if (!set(RLIMIT_DATA, bytes, bytes)) return "RLIMIT_DATA";
    }
    // glibc sizes every thread's stack from RLIMIT_STACK: a stack limit near the memory
    // limit would make the second pthread_create fail under RLIMIT_AS.
    rlim_t stack = rlim_t(l.stack_mb) * mb;
    if (l.memory_mb > 0 && stack > rlim_t(l.memory_mb) * mb / 4) stack = rlim_t(l.memory_mb) * mb / 4;
    if (!set(RLIMIT_STACK, stack, stack)) return "RLIMIT_STACK";
    if (!set(RLIMIT_FSIZE, rlim_t(l.file_size_mb) * mb, rlim_t(l.file_size_mb) * mb)) return "RLIMIT_FSIZE";
    if (!set(RLIMIT_NOFILE, rlim_t(l.open_files), rlim_t(l.open_files))) return "RLIMIT_NOFILE";
    if (!set(RLIMIT_CORE, 0, 0)) return "RLIMIT_CORE";
    if (!set(RLIMIT_MEMLOCK, 0, 0)) return "RLIMIT_MEMLOCK";
    if (!set(RLIMIT_MSGQUEUE, 0, 0)) return "RLIMIT_MSGQUEUE";
    if (per_run_nproc && !set(RLIMIT_NPROC, rlim_t(l.processes), rlim_t(l.processes))) return "RLIMIT_NPROC";
    return nullptr;
}

}  // namespace hf
