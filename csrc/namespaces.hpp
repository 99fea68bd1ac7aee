// Namespaces: the zygote's own (one empty network namespace, a private mount namespace holding
// the read-only template root, and - with the seccomp filter, which denies creating IPC objects -
// one empty IPC namespace all runs share) and the per-run ones (user, pid, mount, uts; ipc too
// when seccomp is unavailable). The zygote's are made by its setup steps (zygote_setup.cpp);
// here: the plan they record, late read-only binds, and each run's own mounts.
#pragma once

#include "trace.hpp"

#include <set>
#include <string>
#include <sys/types.h>
#include <time.h>
#include <vector>

namespace hf {

// name -> "" when active, else why not. Reported once by `halo-forge sandbox check`.
struct Protection {
    std::string name;
    std::string reason;
};

struct NsPlan {
    bool root = false;       // the zygote runs as uid 0 in the initial user namespace
    bool userns = false;     // each run gets its own user namespace (per-run RLIMIT_NPROC)
    bool pidns = false;      // each run gets its own pid namespace (its init dies -> all die)
    bool mntns = false;      // each run pivots into the read-only template root
    bool ipcns = false;      // runs are kept apart in IPC (per-run namespace, or ipc_shared)
    bool ipc_shared = false; // one IPC namespace for all runs, where no run can create an object
    bool utsns = false;
    bool netns = false;      // the zygote sits in one empty network namespace every run inherits
    bool set_ids = false;    // the program switches to run_uid/run_gid (root, or inside a userns)
    uid_t run_uid = 0;       // ids of the program as seen from the zygote's user namespace
    gid_t run_gid = 0;
    bool slot_uids = false;  // root: each concurrent run gets a uid of its own (run_uid + slot,
                             // from blocks this zygote holds), so RLIMIT_NPROC counts that run only
    uid_t inside_uid = 1000; // ids of the program inside its own user namespace
    gid_t inside_gid = 1000;
    std::string root_dir;    // where the template root was built (the zygote's / once it has pivoted)
    std::set<std::string> shown;  // host directories bound read-only into the template
    int host_ns = -1;        // the mount namespace that still shows the host (for late binds)
    int self_ns = -1;        // the zygote's own mount namespace: the template and nothing else
    int base_fd = -1;        // the Sandbox's base directory on the host (workdirs live in it)
    std::string base;        // its path, which the runs see again as the parent of their workdir
    bool base_in_tmp = false;  // base lies below /tmp: the run's /tmp tmpfs holds the workdir too
};

// Before a run: the template shows host directory `path` read-only. Returns "" or an error.
std::string ensure_visible(NsPlan& ns, const std::string& path);

// Everything a run's init needs for its mounts. The zygote fills the first part when it
// prepares the init (before clone), the workdir when it hands the init a run; the init reads
// both without allocating.
struct RunMounts {
    std::string tmpfs_opts;   // size and inode cap of the run's tmpfs (/tmp, and the workdir's)
    std::string uid_map, gid_map;  // written by the init itself (user namespace per run)
    uid_t uid = 0;            // owner of what the init creates for the program
    gid_t gid = 0;
    std::string cwd;          // the workdir's path (the same inside the run as on the host)
    std::string cwd_name;     // its last component
    timespec started{};       // CLOCK_REALTIME when the run was handed over (before the copy in)
    bool launched = false;    // set by the program's process just before its execve
    bool entered = false;     // set by the program's process once the workdir is made and filled
};

// In a prepared init (after clone, before it has a run): id maps, /proc, and a size-capped
// tmpfs holding /tmp and the workdir's parent. Returns nullptr, or the failed step (errno set).
const char* prepare_run_root(const NsPlan& ns, const RunMounts& m, TraceLog* trace);

// Once the init has its run: the host workdir (opened from the base directory `base_fd`)
// copied into a fresh workdir on the tmpfs, chdir there. Returns nullptr or the failed step;
// `*host_wd` is the host workdir, `*wd` the run's (for copy_back), `*tmp_fd` the /tmp tmpfs.
const char* enter_workdir(const NsPlan& ns, const RunMounts& m, int base_fd, TraceLog* trace, int* host_wd, int* wd,
                          int* tmp_fd);

// After the program and everything it started are gone: did the run fill its disk? Then
// (only if not) copy the workdir back to the host. Returns nullptr or the failed step.
bool disk_full(int fd);
// Host entries changed after m.started (by another run in the same workdir) are kept.
const char* copy_back(const NsPlan& ns, const RunMounts& m, int wd, int host_wd);

}  // namespace hf
