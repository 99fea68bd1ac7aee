#include "spawn.hpp"

#include "limits.hpp"
#include "seccomp.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <utility>

namespace hf {

bool g_trace = false;

int64_t mono_ns() {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return int64_t(t.tv_sec) * 1000000000 + t.tv_nsec;
}

void trace_point(int report_w, const char* step) {
    if (!g_trace) return;
    ChildReport r{};
    r.kind = kTrace;
    r.ns = mono_ns();
    std::strncpy(r.step, step, sizeof r.step - 1);
    ssize_t n;
    do n = write(report_w, &r, sizeof r); while (n < 0 && errno == EINTR);
}

namespace {

void report(int fd, int32_t kind, int32_t e, int32_t value, const char* step) {
    ChildReport r{};
    r.kind = kind;
    r.err = e;
    r.value = value;
    if (step) std::strncpy(r.step, step, sizeof r.step - 1);
    ssize_t n;
    do n = write(fd, &r, sizeof r); while (n < 0 && errno == EINTR);
}

[[noreturn]] void fail(int fd, int32_t kind, const char* step) {
    report(fd, kind, errno, 0, step);
    _exit(126);
}

void reset_signals() {
    struct sigaction sa{};
    sa.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; ++s) sigaction(s, &sa, nullptr);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
}

[[noreturn]] void exec_program(const ChildPlan& p) {
    setsid();
    reset_signals();
    if (dup2(p.stdin_fd, 0) < 0 || dup2(p.out_w, 1) < 0 || dup2(p.err_w, 2) < 0) fail(p.report_w, kExecFailed, "dup2 stdio");
    // Nothing of the zygote reaches the program; the report pipe closes at exec.
    if (syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC) != 0) fail(p.report_w, kExecFailed, "close_range");
    // Per-slot uids share the workdir through its group.
    umask(p.ns->slot_uids ? 002 : 022);
    trace_point(p.report_w, "prog: stdio+close_range");
    if (const char* step = apply_rlimits(*p.limits, p.ns->userns || p.ns->root)) fail(p.report_w, kExecFailed, step);
    if (p.ns->set_ids) {
        // Supplementary groups of the caller (root's group 0) must not follow the program.
        // Inside an unprivileged user namespace setgroups is denied and there is nothing to drop.
        if (setgroups(0, nullptr) != 0 && errno != EPERM) fail(p.report_w, kExecFailed, "setgroups");
        if (setresgid(p.gid, p.gid, p.gid) != 0) fail(p.report_w, kExecFailed, "setresgid");
        if (setresuid(p.uid, p.uid, p.uid) != 0) fail(p.report_w, kExecFailed, "setresuid");
    }
    trace_point(p.report_w, "prog: rlimits+ids");
    if (!install_seccomp(*p.seccomp)) fail(p.report_w, kExecFailed, "seccomp");
    trace_point(p.report_w, "prog: seccomp");
    execve(p.exe, p.argv, p.envp);
    fail(p.report_w, kExecFailed, "execve");
}

// Without a pid namespace: kill whatever this subreaper adopted, until nothing is left.
void sweep_children() {
    char path[64], buf[4096];
    for (int round = 0; round < 1000; ++round) {
        snprintf(path, sizeof path, "/proc/self/task/%d/children", int(getpid()));
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
        if (fd >= 0) close(fd);
        if (n > 0) {
            buf[n] = 0;
            for (char* s = buf; *s;) {
                long pid = strtol(s, &s, 10);
                if (pid > 0) kill(pid_t(pid), SIGKILL);
                while (*s == ' ' || *s == '\n') ++s;
            }
        }
        int st;
        pid_t r = waitpid(-1, &st, __WALL | (n > 0 ? 0 : WNOHANG));
        if (r < 0 && errno == ECHILD) return;
        if (r == 0) usleep(1000);
    }
}

}  // namespace

// Keeps only `keep` (and stdio) open: a clone without exec holds every descriptor of the
// zygote, including other runs' pipes and timers, which would outlive their runs.
void close_all_except(int a, int b, int c, int d, int e) {
    int keep[5] = {a, b, c, d, e};
    for (int i = 1; i < 5; ++i)
        for (int j = i; j > 0 && keep[j - 1] > keep[j]; --j) std::swap(keep[j - 1], keep[j]);
    unsigned lo = 3;
    for (int k : keep) {
        if (k < int(lo)) continue;
        if (unsigned(k) > lo) syscall(SYS_close_range, lo, unsigned(k) - 1, 0u);
        lo = unsigned(k) + 1;
    }
    syscall(SYS_close_range, lo, ~0u, 0u);
}

void run_init(const ChildPlan& p) {
    close_all_except(p.stdin_fd, p.out_w, p.err_w, p.report_w, p.sync_r);
    // The zygote is single-threaded, so PDEATHSIG tracks the zygote itself: if it dies, the
    // run's init dies, and with it the pid namespace.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    char go;
    ssize_t n;
    do n = read(p.sync_r, &go, 1); while (n < 0 && errno == EINTR);
    if (n != 1) _exit(125);  // the zygote died or gave up before the id maps were written
    trace_point(p.report_w, "init: wait for go");
    close(p.sync_r);
    if (p.ns->mntns) {
        if (const char* step = enter_run_root(*p.mounts, p.ns->pidns, p.uid, p.gid, p.report_w)) fail(p.report_w, kSetupFailed, step);
    } else if (chdir(p.mounts->cwd.c_str()) != 0) {
        fail(p.report_w, kSetupFailed, "chdir workdir");
    }
    if (p.ns->utsns) sethostname("sandbox", 7);
    if (!p.ns->pidns && prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) fail(p.report_w, kSetupFailed, "PR_SET_CHILD_SUBREAPER");
    pid_t pid = fork();
    if (pid < 0) fail(p.report_w, kSetupFailed, "fork program");
    if (pid == 0) exec_program(p);
    trace_point(p.report_w, "init: fork program");
    close(p.stdin_fd);
    close(p.out_w);
    close(p.err_w);
    report(p.report_w, kStarted, 0, pid, nullptr);
    int status = 0;
    for (;;) {
        int st;
        pid_t r = waitpid(-1, &st, __WALL);
        if (r == pid) { status = st; break; }
        if (r < 0 && errno != EINTR) break;
    }
    trace_point(p.report_w, "program ran");
    if (!p.ns->pidns) {
        kill(-pid, SIGKILL);
        sweep_children();
    }
    trace_point(p.report_w, "init: after program");
    report(p.report_w, kDone, 0, status, nullptr);
    // With a pid namespace, this exit kills everything the program left running.
    _exit(0);
}

}  // namespace hf
