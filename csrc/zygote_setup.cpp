#include "zygote_setup.hpp"

#include "mount_ops.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace hf {

namespace {

// Sandboxed programs run as this uid/gid when the zygote is root: an id no account uses.
constexpr uid_t kRunId = 1999900000;
// Root: run uids come in blocks of kUidBlock, kUidBlocks of them from kRunId on; each zygote
// holds the blocks it uses by a lock per block in kUidLockDir.
constexpr int kUidBlock = 256, kUidBlocks = 4096;
constexpr const char* kUidLockDir = "/run/halo-forge-uids";

// Does a clone with these namespace flags work here? Returns "" or the reason.
std::string probe_clone(int flags) {
    pid_t pid = pid_t(syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, nullptr));
    if (pid < 0) return std::strerror(errno);
    if (pid == 0) _exit(0);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    return {};
}

// The zygote moves into the template for good. Each run's CLONE_NEWNS copies the zygote's
// mount table, and the run's teardown unmounts all of it: a table holding only the template
// (a dozen mounts) instead of the host's as well makes clone, set-up and teardown cheap. The
// host stays reachable through a namespace fd (late read-only binds) and a directory fd
// (the workdirs). Returns "" or why not; on failure nothing has changed.
std::string enter_template(NsPlan& ns, const std::string& base_dir) {
    ns.base = base_dir;
    ns.base_in_tmp = base_dir.compare(0, 5, "/tmp/") == 0;
    if (!ns.base_in_tmp && !mkdir_p(ns.root_dir + base_dir, 0755)) return err("mkdir workdir parent in template", errno);
    // An unprivileged run may mount its own /proc only where a full proc is already visible
    // in its mount namespace (mount_too_revealing): keep the host's under the run's.
    if (ns.userns && ns.pidns) {
        std::string dst = ns.root_dir + "/proc";
        if (mount("/proc", dst.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) return err("bind /proc into template", errno);
        if (mount(nullptr, dst.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | MS_NOEXEC | kept_flags(dst.c_str()), nullptr) != 0)
            return err("remount template /proc", errno);
    }
    ns.base_fd = open(base_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    ns.host_ns = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
    if (ns.base_fd < 0 || ns.host_ns < 0) return err("open base directory / mount namespace", errno);
    if (unshare(CLONE_NEWNS) != 0) return err("unshare(CLONE_NEWNS) for the template", errno);
    ns.self_ns = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
    std::string why;
    if (ns.self_ns < 0) why = err("open template mount namespace", errno);
    else if (chdir(ns.root_dir.c_str()) != 0) why = err("chdir template", errno);
    else if (syscall(SYS_pivot_root, ".", ".") != 0) why = err("pivot_root into template", errno);
    if (!why.empty()) {
        if (setns(ns.host_ns, CLONE_NEWNS) != 0) _exit(1);
        return why;
    }
    // From here on there is no way back but setns(host_ns); a failure ends the zygote.
    if (umount2(".", MNT_DETACH) != 0 || chdir("/") != 0) {
        dprintf(2, "halo-forge sandbox zygote: detaching the host root: %s\n", std::strerror(errno));
        _exit(1);
    }
    why = set_root_readonly(true);
    if (!why.empty()) {
        dprintf(2, "halo-forge sandbox zygote: %s\n", why.c_str());
        _exit(1);
    }
    return {};
}

const std::string& reason_of(const std::vector<Protection>& prot, const std::string& name) {
    static const std::string none;
    for (auto& p : prot)
        if (p.name == name) return p.reason;
    return none;
}

void set_reason(std::vector<Protection>& prot, const std::string& name, const std::string& why) {
    for (auto& p : prot)
        if (p.name == name) { p.reason = why; return; }
    prot.push_back({name, why});
}

// Root: claims the lowest `blocks` consecutive free blocks of run uids for as long as this
// process lives (an exclusive flock per block, which the kernel drops however the process
// dies). Two zygotes sharing a uid would share its RLIMIT_NPROC count: one run's fork bomb
// would make another sandbox's run fail. Returns the first uid, or 0 with `why`.
uid_t claim_uid_blocks(int blocks, std::string& why) {
    if (mkdir(kUidLockDir, 0700) != 0 && errno != EEXIST) return why = err("mkdir /run/halo-forge-uids", errno), 0;
    int dir = open(kUidLockDir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir < 0) return why = err("open /run/halo-forge-uids", errno), 0;
    struct stat st;
    if (fstat(dir, &st) != 0 || st.st_uid != 0 || (st.st_mode & 022) != 0) {
        close(dir);
        return why = "/run/halo-forge-uids is not root's own directory", 0;
    }
    for (int first = 0; first + blocks <= kUidBlocks; ++first) {
        std::vector<int> held;
        for (int b = first; b < first + blocks; ++b) {
            char name[32];
            snprintf(name, sizeof name, "block-%d", b);
            int fd = openat(dir, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
            if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0) {
                held.push_back(fd);
                continue;
            }
            if (fd >= 0) close(fd);
            break;
        }
        if (int(held.size()) == blocks) {
            close(dir);
            return kRunId + uid_t(first) * kUidBlock;  // the descriptors stay open: they are the locks
        }
        for (int fd : held) close(fd);
    }
    close(dir);
    return why = "every block of run uids is taken", 0;
}

void share_ipc_namespace(NsPlan& ns) {
    // Creating an IPC namespace is the dearest part of a run's clone (its mqueue mount and
    // sysctl tables). Runs can share one when none of them can make an IPC object: seccomp
    // denies shmget/msgget/semget/mq_open, and the namespace starts empty. Its limits at zero
    // are a second wall (best effort: an older kernel refuses them to a user namespace's root).
    if (unshare(CLONE_NEWIPC) != 0) return;
    write_file("/proc/sys/kernel/shmmni", "0");
    write_file("/proc/sys/kernel/msgmni", "0");
    write_file("/proc/sys/kernel/sem", "0 0 0 0");
    write_file("/proc/sys/fs/mqueue/queues_max", "0");
    ns.ipc_shared = true;
}

// What the setup steps share.
struct Setup {
    NsPlan& ns;
    const std::vector<Protection>& prot;  // read only: the runner records each step's reason
    const std::string& base_dir;
    bool share_ipc;
    int slots;
    uid_t uid;  // the caller's ids, before any user namespace
    gid_t gid;
    uid_t claimed = 0;        // root: the first run uid of the blocks this zygote holds (0: none)
    bool own_userns = false;  // the zygote made a user namespace of its own (an ordinary user)
    int probe_base = -1;      // clone flags every per-run probe includes; -1: none can work
};

constexpr const char* kNeedsPrivilege = "needs root or an unprivileged user namespace";

// Root, before any namespace changes (the lock directory is the host's).
std::string reserve_run_uids(Setup& s) {
    if (!s.ns.root) return {};
    std::string why;
    s.claimed = claim_uid_blocks((std::max(s.slots, 1) + kUidBlock - 1) / kUidBlock, why);
    if (s.claimed) return {};
    return "run uids not reserved (" + why + "); another sandbox may share them";
}

// The zygote's own namespaces: one empty network namespace that every run inherits (creating
// one per run is slow and serialised in the kernel), and a private mount namespace to hold
// the template root. Root makes them directly.
std::string own_namespaces_as_root(Setup& s) {
    if (!s.ns.root) return {};
    if (unshare(CLONE_NEWNET | CLONE_NEWNS) == 0) {
        s.ns.netns = s.ns.mntns = true;
        return {};
    }
    if (unshare(CLONE_NEWNS) == 0) s.ns.mntns = true;
    return err("unshare(CLONE_NEWNET)", errno);
}

// An ordinary user makes them inside a user namespace of its own.
std::string own_namespaces_as_user(Setup& s) {
    if (s.ns.root) return {};
    if (unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS) != 0)
        return err("unshare(CLONE_NEWUSER) (unprivileged user namespaces disabled?)", errno);
    // Identity map: files the runs write stay owned by the calling user. An unmapped user
    // namespace is useless; the process cannot leave it, so it carries on without mounts
    // (there is nothing privileged left to lose).
    if (!write_file("/proc/self/setgroups", "deny") ||
        !write_file("/proc/self/uid_map", std::to_string(s.uid) + " " + std::to_string(s.uid) + " 1") ||
        !write_file("/proc/self/gid_map", std::to_string(s.gid) + " " + std::to_string(s.gid) + " 1"))
        return err("writing uid_map/gid_map", errno);
    s.own_userns = s.ns.netns = s.ns.mntns = true;
    return {};
}

std::string network_namespace(Setup& s) { return s.ns.netns ? "" : kNeedsPrivilege; }

std::string private_mounts(Setup& s) {
    if (!s.ns.mntns || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0) return {};
    s.ns.mntns = false;
    return err("making / private", errno);
}

// Which per-run namespaces can be created here. Root needs no per-run user namespace:
// per-slot uids bound RLIMIT_NPROC per run, and a mount namespace inside a new user namespace
// costs ~2 ms per run (copy and teardown of a locked mount tree) against ~0.2 ms without.
std::string per_run_user_namespace(Setup& s) {
    std::string why = s.own_userns ? probe_clone(CLONE_NEWUSER) : "";
    s.ns.userns = s.own_userns && why.empty();
    s.probe_base = s.ns.userns ? CLONE_NEWUSER : s.ns.root ? 0 : -1;
    return why.empty() ? "" : "clone(CLONE_NEWUSER): " + why;
}

std::string per_run_pid_namespace(Setup& s) {
    if (s.probe_base < 0) return kNeedsPrivilege;
    std::string why = probe_clone(s.probe_base | CLONE_NEWPID);
    s.ns.pidns = why.empty();
    return why.empty() ? "" : "clone(CLONE_NEWPID): " + why;
}

std::string per_run_ipc_namespace(Setup& s) {
    if (s.probe_base < 0) return kNeedsPrivilege;
    std::string why = probe_clone(s.probe_base | CLONE_NEWIPC);
    s.ns.ipcns = why.empty();
    return why.empty() ? "" : "clone(CLONE_NEWIPC): " + why;
}

// A nicety (each run its own hostname): no protection depends on it, so nothing to report.
std::string per_run_uts_namespace(Setup& s) {
    s.ns.utsns = s.probe_base >= 0 && probe_clone(s.probe_base | CLONE_NEWUTS).empty();
    return {};
}

std::string per_run_mount_namespace(Setup& s) {
    if (s.probe_base < 0) s.ns.mntns = false;
    if (!s.ns.mntns) return kNeedsPrivilege;  // kept only where nothing said why before
    std::string why = probe_clone(s.probe_base | CLONE_NEWNS);
    if (why.empty()) return {};
    s.ns.mntns = false;
    return "clone(CLONE_NEWNS): " + why;
}

// Made here, while the host's /proc still shows its sysctls. Best effort: without it each
// run gets an IPC namespace of its own.
std::string shared_ipc_namespace(Setup& s) {
    if (s.ns.ipcns && s.share_ipc) share_ipc_namespace(s.ns);
    return {};
}

// The program's ids: root hands runs to an unused uid; an ordinary user keeps its own.
std::string run_ids(Setup& s) {
    NsPlan& ns = s.ns;
    if (ns.root) {
        // A uid per concurrent run, from blocks this zygote holds (else still a uid per run,
        // but another zygote may pick the same ones); all share one group so that every run
        // can write the workdir (mode 2770, umask 002).
        ns.run_uid = s.claimed ? s.claimed : kRunId + uid_t(getpid() % (kUidBlocks / 4)) * 4 * kUidBlock;
        ns.run_gid = kRunId;
        ns.set_ids = ns.slot_uids = true;
    } else {
        ns.run_uid = s.uid;
        ns.run_gid = s.gid;
        ns.set_ids = ns.userns;
    }
    if (ns.userns) return {};
    ns.inside_uid = ns.run_uid;
    ns.inside_gid = ns.run_gid;
    if (ns.root) return {};
    return "no user namespaces: RLIMIT_NPROC would count every process of this user, so it is not set";
}

// The template root: a tmpfs showing the system read-only.
std::string template_root(Setup& s) {
    NsPlan& ns = s.ns;
    if (!ns.mntns) return {};
    ns.root_dir = s.base_dir + "/.root";
    std::string why;
    if (mount("tmpfs", ns.root_dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=4m") != 0) {
        why = err("mount tmpfs template root", errno);
    } else {
        for (const char* d : {"/usr", "/etc", "/opt", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}) {
            struct stat st;
            if (lstat(d, &st) != 0) continue;
            std::string dst = ns.root_dir + d;
            if (S_ISLNK(st.st_mode)) {
                char target[4096];
                ssize_t n = readlink(d, target, sizeof target - 1);
                if (n < 0) { why = err(d, errno); break; }
                target[n] = 0;
                if (symlink(target, dst.c_str()) != 0) { why = err(("symlink " + dst).c_str(), errno); break; }
            } else if (S_ISDIR(st.st_mode)) {
                why = bind_ro(d, dst, false);
                if (!why.empty()) break;
                ns.shown.insert(d);
            }
        }
        for (const char* d : {"/proc", "/tmp", "/dev", "/dev/shm"})
            if (why.empty() && mkdir((ns.root_dir + d).c_str(), 0755) != 0) why = err(d, errno);
        for (const char* d : {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"})
            if (why.empty()) why = bind_ro(d, ns.root_dir + d, true);
        const char* links[][2] = {{"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"},
                                  {"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"}};
        for (auto& l : links)
            if (why.empty() && symlink(l[0], (ns.root_dir + l[1]).c_str()) != 0) why = err(l[1], errno);
    }
    if (!why.empty()) ns.mntns = false;
    return why;
}

std::string pivot_into_template(Setup& s) {
    if (!s.ns.mntns) return {};
    std::string why = enter_template(s.ns, s.base_dir);
    if (!why.empty()) s.ns.mntns = false;
    return why;
}

std::string readonly_filesystem(Setup& s) {
    return s.ns.mntns ? "" : "no mount namespace: " + reason_of(s.prot, "mount_namespace");
}

std::string disk_limit(Setup& s) {
    return s.ns.mntns ? "" : "no mount namespace for a size-capped workdir: " + reason_of(s.prot, "mount_namespace");
}

struct SetupStep {
    // The protection a reason turns off; null: nothing is turned off, the reason is a warning.
    const char* protection;
    std::string (*run)(Setup&);  // "" or the reason
};

// In order: each step may rely on what the steps above it found. A protection keeps the
// first reason given for it (the cause, not a later consequence).
constexpr SetupStep kSetupSteps[] = {
    {nullptr, reserve_run_uids},
    {"network_namespace", own_namespaces_as_root},
    {"user_namespace", own_namespaces_as_user},
    {"network_namespace", network_namespace},
    {"mount_namespace", private_mounts},
    {"user_namespace", per_run_user_namespace},
    {"pid_namespace", per_run_pid_namespace},
    {"ipc_namespace", per_run_ipc_namespace},
    {nullptr, per_run_uts_namespace},
    {"mount_namespace", per_run_mount_namespace},
    {nullptr, shared_ipc_namespace},
    {"process_limit_per_run", run_ids},
    {"mount_namespace", template_root},
    {"mount_namespace", pivot_into_template},
    {"readonly_filesystem", readonly_filesystem},
    {"disk_limit", disk_limit},
};

}  // namespace

void setup_zygote(NsPlan& ns, std::vector<Protection>& prot, const std::string& base_dir, bool share_ipc, int slots) {
    ns.root = geteuid() == 0;
    for (const char* n : {"network_namespace", ns.root ? "per_run_uid" : "user_namespace", "pid_namespace",
                          "mount_namespace", "readonly_filesystem", "ipc_namespace", "process_limit_per_run",
                          "disk_limit"})
        set_reason(prot, n, "");
    Setup s{ns, prot, base_dir, share_ipc, slots, geteuid(), getegid()};
    for (const SetupStep& step : kSetupSteps) {
        std::string why = step.run(s);
        if (why.empty()) continue;
        if (!step.protection) dprintf(2, "halo-forge sandbox zygote: %s\n", why.c_str());
        else if (reason_of(prot, step.protection).empty()) set_reason(prot, step.protection, why);
    }
}

}  // namespace hf
