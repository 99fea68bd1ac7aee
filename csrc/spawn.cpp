#include "spawn.hpp"

#include "limits.hpp"
#include "seccomp.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>

namespace hf {

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

// The zygote is a static program of ours: the only disposition it changes is SIGPIPE
// (ignored, which execve would keep), and it blocks nothing. Resetting just those two is all
// a per-signal loop (64 syscalls per run) would have done.
void reset_signals() {
    struct sigaction sa{};
    sa.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &sa, nullptr);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
}

// The program's process. The init starts it while it is a spare, with the init's stdio,
// signal state and seccomp filter; it takes its own session and waits on the go pipe. Given
// the run: the workdir copied in (still privileged: the caller's files may be readable by
// the caller only), the run's rlimits and ids, execve.
[[noreturn]] void run_program(const ChildPlan& p) {
    setsid();
    // Per-slot uids share the workdir through its group.
    umask(p.ns->slot_uids ? 002 : 022);
    prctl(PR_SET_NAME, "hf-spare");
    char go = 0;
    ssize_t got;
    do got = read(p.go_r, &go, 1); while (got < 0 && errno == EINTR);
    if (got != 1) _exit(0);  // the zygote retired this spare
    close(p.go_r);
    trace_point(p.trace, "program: go");
    if (p.ns->mntns) {
        int host_wd = -1, wd = -1, tmp = -1;
        if (const char* step = enter_workdir(*p.ns, *p.mounts, p.base_fd, p.trace, &host_wd, &wd, &tmp))
            fail(p.report_w, kSetupFailed, step);
        p.mounts->entered = true;  // the init copies the workdir back only once it was made
        if (p.warm) {
            // The rest (rlimits, ids, seccomp, the program) is the template's fork's, which
            // joins this run's namespaces; from here the run is out of the zygote's hands.
            p.mounts->launched = true;
            report(p.report_w, kWarmReady, 0, 0, nullptr);
            _exit(0);
        }
    } else if (chdir(p.mounts->cwd.c_str()) != 0) {
        fail(p.report_w, kSetupFailed, "chdir workdir");
    }
    // Nothing of the zygote reaches the program; the report pipe closes at exec. (Every
    // descriptor above stdio is close-on-exec already: this is the backstop.)
    if (syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC) != 0) fail(p.report_w, kExecFailed, "close_range");
    if (const char* step = apply_rlimits(*p.limits, p.ns->userns || p.ns->root)) fail(p.report_w, kExecFailed, step);
    if (p.ns->set_ids) {
        // Supplementary groups of the caller (root's group 0) must not follow the program.
        // Inside an unprivileged user namespace setgroups is denied and there is nothing to drop.
        if (setgroups(0, nullptr) != 0 && errno != EPERM) fail(p.report_w, kExecFailed, "setgroups");
        if (setresgid(p.gid, p.gid, p.gid) != 0) fail(p.report_w, kExecFailed, "setresgid");
        if (setresuid(p.uid, p.uid, p.uid) != 0) fail(p.report_w, kExecFailed, "setresuid");
    }
    trace_point(p.trace, "program: rlimits+ids");
    // Until here nothing of the run reached beyond its own tmpfs: a run whose processes are
    // killed before this line can go to another init.
    p.mounts->launched = true;
    execve(p.exe, p.argv, p.envp);
    fail(p.report_w, kExecFailed, "execve");
}

int program_entry(void* plan) { run_program(*static_cast<const ChildPlan*>(plan)); }

// Starts the program's process: on x86_64 in this address space on its own stack and TLS
// (nothing is copied, and it reads the run the zygote writes here later); elsewhere a fork,
// made only once the run is known (no spares there).
pid_t start_program(const ChildPlan& p) {
#if defined(__x86_64__)
    return clone(program_entry, p.program_stack, CLONE_VM | CLONE_SETTLS | SIGCHLD, const_cast<ChildPlan*>(&p), nullptr,
                 p.program_tp, nullptr);
#else
    pid_t pid = fork();
    if (pid == 0) run_program(p);
    return pid;
#endif
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
void close_all_except(std::array<int, 8> keep) {
    std::sort(keep.begin(), keep.end());
    unsigned lo = 3;
    for (int k : keep) {
        if (k < int(lo)) continue;
        if (unsigned(k) > lo) syscall(SYS_close_range, lo, unsigned(k) - 1, 0u);
        lo = unsigned(k) + 1;
    }
    syscall(SYS_close_range, lo, ~0u, 0u);
}

void run_init(const ChildPlan& p) {
    close_all_except({p.stdin_fd, p.out_w, p.err_w, p.report_w, p.alive_r, p.go_r, p.base_fd, p.warm_r});
    // The zygote is single-threaded, so PDEATHSIG tracks the zygote itself: if it dies, the
    // run's init dies, and with it the pid namespace. It may have died before this line:
    // then nothing holds the other end of the alive pipe any more.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    pollfd alive{p.alive_r, POLLIN, 0};
    if (poll(&alive, 1, 0) != 0) _exit(125);
    close(p.alive_r);
    trace_point(p.trace, "init: start");
    // Everything that does not depend on the run happens here, while this init waits as a
    // spare: off the critical path of the run it will get.
    if (p.ns->mntns) {
        if (const char* step = prepare_run_root(*p.ns, *p.mounts, p.trace)) fail(p.report_w, kSetupFailed, step);
    }
    // The init holds the host base directory open; unprivileged, the program has the init's
    // uid. /proc/1/fd and /proc/1/cwd stay closed to it without PR_SET_DUMPABLE (which would
    // be the zygote's too: it is per address space): the init keeps every capability of its
    // user namespace and the program has none after execve (uid 1000 inside, or a run uid as
    // root), and ptrace access needs the caller's capabilities to cover the target's.
    if (p.ns->utsns) sethostname("sandbox", 7);
    if (!p.ns->pidns && prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) fail(p.report_w, kSetupFailed, "PR_SET_CHILD_SUBREAPER");
    // The program's stdio and the signal state it starts with are the init's own (the init
    // never uses stdio).
    if (dup2(p.stdin_fd, 0) < 0 || dup2(p.out_w, 1) < 0 || dup2(p.err_w, 2) < 0) fail(p.report_w, kSetupFailed, "dup2 stdio");
    close(p.stdin_fd);
    close(p.out_w);
    close(p.err_w);
    reset_signals();
    // The init is filtered too, before it ever sees a run: the program's process inherits the
    // compiled filter (installing one per process costs the kernel a compile of it), and
    // nothing the init does from here on needs what the filter denies.
    if (!install_seccomp(*p.seccomp)) fail(p.report_w, kSetupFailed, "seccomp");
    prctl(PR_SET_NAME, "hf-init");
    trace_point(p.trace, "init: ready");
    // From here the trace log is the program's until it has exec'd or died.
    pid_t pid = start_program(p);
    if (pid < 0) fail(p.report_w, kSetupFailed, "start the program's process");
    close(p.go_r);
    close(0);
    // The init keeps its copies of the output pipes until it has reported: the program's
    // exit is then no end of file that wakes the zygote for nothing mid-run; the zygote
    // drains both pipes when it reads the report (every other writer is dead by then).
    // Only the zygote's kill without a pid namespace needs the program's pid (its session);
    // with one, the report would wake the zygote for nothing while the program runs.
    if (!p.ns->pidns) report(p.report_w, kStarted, 0, pid, nullptr);
    int status = 0;
    for (;;) {
        int st;
        pid_t r = waitpid(-1, &st, __WALL);
        if (r == pid) { status = st; break; }
        if (r < 0 && errno != EINTR) break;
    }
    int64_t warm_cpu_us = 0, warm_rss_kb = 0;
    if (p.warm && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        // The program is the template's fork (pywarm_main.py): 'R' once it is set up (end of
        // file or anything else first: it failed before, which is the sandbox's failure, never
        // the sample's), then its parent's 'S' record, what wait4 said of it. The program
        // closed the pipe before any of the run's code ran; only the template's side writes
        // the record. Orphans of the program are this init's, reaped below.
        auto take = [&p](void* into, size_t size) {
            size_t got = 0;
            while (got < size) {
                ssize_t n = read(p.warm_r, static_cast<char*>(into) + got, size - got);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) break;
                got += size_t(n);
            }
            return got == size;
        };
        char ready = 0;
        if (!take(&ready, 1) || ready != 'R') {
            errno = EPROTO;
            fail(p.report_w, kSetupFailed, "warm python: the program's set-up");
        }
        trace_point(p.trace, "warm: program set up");
        char rec[21];
        if (!take(rec, sizeof rec) || rec[0] != 'S') {
            errno = EPROTO;
            fail(p.report_w, kSetupFailed, "warm python: no wait status");
        }
        std::memcpy(&status, rec + 1, 4);
        std::memcpy(&warm_cpu_us, rec + 5, 8);
        std::memcpy(&warm_rss_kb, rec + 13, 8);
    }
    if (p.warm_r >= 0) close(p.warm_r);
    trace_point(p.trace, "program ran");
    // Nothing the program started may outlive it, nor write the workdir while it is copied.
    if (p.ns->pidns) {
        kill(-1, SIGKILL);
        for (;;) {
            pid_t r = waitpid(-1, nullptr, __WALL);
            if (r < 0 && errno != EINTR) break;
        }
    } else {
        kill(-pid, SIGKILL);
        sweep_children();
    }
    int32_t flags = 0;
    if (p.mounts->entered) {
        // The program's process made the workdir; the init opens it again (by name, never
        // following a link) to copy it back.
        int host_wd = openat(p.base_fd, p.mounts->cwd_name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int parent = open(p.ns->base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int wd = parent < 0 ? -1 : openat(parent, p.mounts->cwd_name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int tmp = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (host_wd < 0 || wd < 0) fail(p.report_w, kSetupFailed, "reopen the workdir to copy it back");
        // A full disk is a limit the program hit (output_limit); what filled it stays out of
        // the host workdir.
        if (disk_full(wd) || disk_full(tmp)) flags |= kDiskFull;
        else if (const char* step = copy_back(*p.ns, *p.mounts, wd, host_wd)) fail(p.report_w, kSetupFailed, step);
        trace_point(p.trace, "copy workdir back");
    }
    // The zygote answers on this report, before this process's exit tears the namespaces
    // down, so it carries what wait4 would have said.
    ChildReport done{};
    done.kind = kDone;
    done.err = flags;
    done.value = status;
    rusage self{}, kids{};
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    auto us = [](const timeval& t) { return int64_t(t.tv_sec) * 1000000 + t.tv_usec; };
    done.cpu_us = us(self.ru_utime) + us(self.ru_stime) + us(kids.ru_utime) + us(kids.ru_stime);
    done.cpu_us += warm_cpu_us;
    done.maxrss_kb = std::max<int64_t>(kids.ru_maxrss, warm_rss_kb);
    ssize_t n;
    do n = write(p.report_w, &done, sizeof done); while (n < 0 && errno == EINTR);
    _exit(0);
}

}  // namespace hf
