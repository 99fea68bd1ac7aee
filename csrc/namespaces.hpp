// Namespaces: the zygote's own (one empty network namespace, a private mount namespace holding
// the read-only template root) and the per-run ones (user, pid, mount, ipc, uts).
#pragma once

#include <set>
#include <string>
#include <sys/types.h>
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
    bool ipcns = false;
    bool utsns = false;
    bool netns = false;      // the zygote sits in one empty network namespace every run inherits
    bool set_ids = false;    // the program switches to run_uid/run_gid (root, or inside a userns)
    uid_t run_uid = 0;       // ids of the program as seen from the zygote's user namespace
    gid_t run_gid = 0;
    bool slot_uids = false;  // root: each concurrent run gets a uid of its own (run_uid + slot),
                             // so RLIMIT_NPROC counts that run only
    uid_t inside_uid = 1000; // ids of the program inside its own user namespace
    gid_t inside_gid = 1000;
    std::string root_dir;    // template root: a tmpfs in the zygote's mount namespace
    std::set<std::string> shown;  // host directories bound read-only into the template
    std::set<std::string> mountpoints;
};

// Runs the zygote's setup steps in order (single-threaded process, before any run);
// every step that fails turns its protections off with the reason and the rest carry on.
void setup_zygote(NsPlan& ns, std::vector<Protection>& prot, const std::string& base_dir);

// Before a run: the template shows host directory `path` read-only. Returns "" or an error.
std::string ensure_visible(NsPlan& ns, const std::string& path);
// Before a run: the template has the workdir's parent directory (each run mounts its own
// small tmpfs there and the workdir inside it).
std::string ensure_mountpoint(NsPlan& ns, const std::string& cwd);

// Paths for the per-run mount steps, prepared before clone (no allocation in the child).
struct RunMounts {
    std::string root, proc, tmp, tmp_opts, cwd_host, cwd_in_root, cwd;
    std::string parent_rel;  // the workdir's parent, relative to the new root
};
// In the run's init (after clone): proc, private /tmp, writable workdir, read-only root,
// pivot_root. Returns nullptr, or the name of the step that failed (errno set).
const char* enter_run_root(const RunMounts& m, bool pidns, uid_t fsuid, gid_t fsgid, int trace_fd);

// Writes the uid/gid maps of a freshly cloned run. Returns "" or an error.
std::string write_id_maps(const NsPlan& ns, pid_t pid);

}  // namespace hf
