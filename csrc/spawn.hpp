// The two processes of one run below the zygote, both prepared before the run arrives:
//   init (C2): pid 1 of the run's pid namespace (or a subreaper without one). Sets up /proc,
//              the tmpfs and seccomp, starts the program's process, reaps it, kills and reaps
//              whatever it left, copies the workdir back, reports the program's wait status,
//              exits. Each init serves one run: nothing a run leaves can reach another.
//   program (C3): its own session, then waits on the "go" pipe; given the run, it copies the
//              workdir in, sets the run's rlimits and ids, execve (the init's seccomp filter
//              is inherited).
// Everything is prepared by the zygote; the children only make syscalls. Both share the
// zygote's address space (clone(CLONE_VM) on a stack and TLS copy of their own): they must
// never allocate, and read only what the zygote keeps unchanged until the init is reaped. The
// run's part of ChildPlan is written by the zygote before the byte on the go pipe.
#pragma once

#include "namespaces.hpp"
#include "protocol.hpp"
#include "report.hpp"
#include "trace.hpp"

#include <cstdint>
#include <linux/filter.h>
#include <vector>

namespace hf {

struct ChildPlan {
    // Known when the init is prepared.
    uid_t uid;  // the program's ids, in the namespace it runs in
    gid_t gid;
    int stdin_fd, out_w, err_w, report_w;
    int alive_r;  // read end of a pipe only the zygote writes to: hangs up when it is gone
    int go_r;     // one byte: the run below is filled in; end of file: never used, exit
    int base_fd;  // the host base directory holding the workdirs
    const NsPlan* ns;
    RunMounts* mounts;  // the workdir part is filled in with the run
    const std::vector<sock_filter>* seccomp;  // empty: seccomp unavailable (reported)
    TraceLog* trace;    // HALO_SANDBOX_TRACE: the steps' times (null: off)
    void* program_stack;  // the program's process before execve (x86_64: shares this memory)
    void* program_tp;
    // The run, filled in before the go byte.
    const char* exe;
    char* const* argv;
    char* const* envp;
    const Limits* limits;
    // The warm Python path (zygote.cpp): the program's process only makes the workdir and
    // reports kWarmReady; the template's fork joins the run and writes its pid (as seen in
    // the run's pid namespace) to the pipe read here, and the init waits for that process.
    int warm_r = -1;
    bool warm = false;  // filled in with the run
};

[[noreturn]] void run_init(const ChildPlan& p);

}  // namespace hf
