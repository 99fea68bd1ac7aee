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

RlimitPlan rlimit_plan(const Limits& l, bool per_run_nproc) {
    const rlim_t mb = rlim_t(1) << 20;
    long cpu = cpu_rlimit_seconds(l);
    RlimitPlan p;
    auto add = [&p](int what, const char* name, rlim_t soft, rlim_t hard) { p.set[p.n++] = {what, name, soft, hard}; };
    // SIGXCPU at the soft limit, SIGKILL one second later if the program catches it.
    add(RLIMIT_CPU, "RLIMIT_CPU", rlim_t(cpu), rlim_t(cpu + 1));
    if (l.memory_mb > 0) {
        rlim_t bytes = rlim_t(l.memory_mb) * mb;
        add(RLIMIT_AS, "RLIMIT_AS", bytes, bytes);
        add(RLIMIT_DATA, "RLIMIT_DATA", bytes, bytes);
    }
    // glibc sizes every thread's stack from RLIMIT_STACK: a stack limit near the memory
    // limit would make the second pthread_create fail under RLIMIT_AS.
    rlim_t stack = rlim_t(l.stack_mb) * mb;
    if (l.memory_mb > 0 && stack > rlim_t(l.memory_mb) * mb / 4) stack = rlim_t(l.memory_mb) * mb / 4;
    add(RLIMIT_STACK, "RLIMIT_STACK", stack, stack);
    add(RLIMIT_FSIZE, "RLIMIT_FSIZE", rlim_t(l.file_size_mb) * mb, rlim_t(l.file_size_mb) * mb);
    add(RLIMIT_NOFILE, "RLIMIT_NOFILE", rlim_t(l.open_files), rlim_t(l.open_files));
    add(RLIMIT_CORE, "RLIMIT_CORE", 0, 0);
    add(RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK", 0, 0);
    add(RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE", 0, 0);
    if (per_run_nproc) add(RLIMIT_NPROC, "RLIMIT_NPROC", rlim_t(l.processes), rlim_t(l.processes));
    return p;
}

const char* apply_rlimits(const Limits& l, bool per_run_nproc) {
    RlimitPlan p = rlimit_plan(l, per_run_nproc);
    for (int i = 0; i < p.n; ++i)
        if (!set(p.set[i].resource, p.set[i].soft, p.set[i].hard)) return p.set[i].name;
    return nullptr;
}

}  // namespace hf
