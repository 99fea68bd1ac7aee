#include "namespaces.hpp"
#include "mount_ops.hpp"
#include "trace.hpp"
#include "tree_copy.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <linux/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace hf {

std::string ensure_visible(NsPlan& ns, const std::string& path) {
    if (!ns.mntns) return {};
    if (path.empty() || path[0] != '/' || path == "/") return "refusing to show '" + path + "' read-only";
    for (auto& s : ns.shown)
        if (path == s || (path.size() > s.size() && path.compare(0, s.size(), s) == 0 && path[s.size()] == '/'))
            return {};
    // The host is visible only from the namespace the zygote left: clone the directory there
    // and attach the clone here.
    if (setns(ns.host_ns, CLONE_NEWNS) != 0) return err("setns(host mount namespace)", errno);
    int tree = int(syscall(SYS_open_tree, AT_FDCWD, path.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE));
    int e = errno;
    if (setns(ns.self_ns, CLONE_NEWNS) != 0) {
        // Runs started from the host's namespace would see all of it: stop here.
        dprintf(2, "halo-forge sandbox zygote: cannot return to the template namespace: %s\n", std::strerror(errno));
        _exit(1);
    }
    if (tree < 0) return err(("open_tree " + path).c_str(), e);
    std::string why;
    mount_attr attr{};
    attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0)
        why = err(("read-only " + path).c_str(), errno);
    if (why.empty()) why = set_root_readonly(false);
    if (why.empty() && !mkdir_p(path, 0755)) why = err(("mkdir " + path).c_str(), errno);
    if (why.empty() && syscall(SYS_move_mount, tree, "", AT_FDCWD, path.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0)
        why = err(("attach " + path).c_str(), errno);
    std::string ro = set_root_readonly(true);
    close(tree);
    if (why.empty()) why = ro;
    if (why.empty()) ns.shown.insert(path);
    return why;
}

// mkdir -p without allocating (runs in the child); existing directories are fine.
static bool mkdirs_in_child(const char* path) {
    char buf[4096];
    size_t n = std::strlen(path);
    if (n >= sizeof buf) { errno = ENAMETOOLONG; return false; }
    std::memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; ++i) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return false;
        buf[i] = c;
    }
    return true;
}

const char* prepare_run_root(const NsPlan& ns, const RunMounts& m, TraceLog* trace) {
    auto T = [trace](const char* s) { trace_point(trace, s); };
    if (ns.userns) {
        // A process may map its own user id into the user namespace it created: no round
        // trip to the zygote. (The template's /proc is the host's until ours covers it.)
        if (!write_file("/proc/self/setgroups", "deny")) return "write setgroups";
        if (!write_file("/proc/self/uid_map", m.uid_map)) return "write uid_map";
        if (!write_file("/proc/self/gid_map", m.gid_map)) return "write gid_map";
        T("id maps");
    }
    if (ns.pidns && mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
        return "mount /proc";
    T("mount /proc");
    // One tmpfs of disk_mb holds /tmp and, below it, the workdir: every byte and inode the
    // run can write is in it (a base outside /tmp gets a tmpfs of its own).
    if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, m.tmpfs_opts.c_str()) != 0) return "mount /tmp";
    if (ns.base_in_tmp) {
        if (!mkdirs_in_child(ns.base.c_str())) return "mkdir workdir parent";
    } else if (mount("tmpfs", ns.base.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, m.tmpfs_opts.c_str()) != 0) {
        return "mount workdir tmpfs";
    }
    T("mount tmpfs");
    return nullptr;
}

const char* enter_workdir(const NsPlan& ns, const RunMounts& m, int base_fd, TraceLog* trace, int* host_out, int* wd_out,
                          int* tmp_out) {
    int host_wd = openat(base_fd, m.cwd_name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (host_wd < 0) return "open host workdir";
    *host_out = host_wd;
    int parent = open(ns.base.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (parent < 0) return "open workdir parent";
    struct stat st;
    if (fstat(host_wd, &st) != 0) return "stat host workdir";
    if (mkdirat(parent, m.cwd_name.c_str(), 0700) != 0) return "mkdir workdir";
    int wd = openat(parent, m.cwd_name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    close(parent);
    if (wd < 0) return "open workdir";
    if (ns.root && fchown(wd, m.uid, m.gid) != 0) return "chown workdir";
    if (fchmod(wd, st.st_mode & 03777) != 0) return "chmod workdir";
    if (const char* step = mirror_dir(host_wd, wd, ns.root ? long(m.uid) : -1, m.gid)) {
        // ENOSPC here: the files already in the workdir exceed disk_mb.
        return errno == ENOSPC ? "workdir files exceed Limits.disk_mb" : step;
    }
    trace_point(trace, "copy workdir in");
    *tmp_out = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    *wd_out = wd;
    if (fchdir(wd) != 0) return "chdir workdir";
    return nullptr;
}

bool disk_full(int fd) {
    struct statfs s;
    if (fd < 0 || fstatfs(fd, &s) != 0) return false;
    // A write that did not fit leaves at most a little: 1% of the cap counts as full.
    return s.f_ffree == 0 || s.f_bavail * 100 < s.f_blocks;
}

const char* copy_back(const NsPlan& ns, const RunMounts& m, int wd, int host_wd) {
    return mirror_dir(wd, host_wd, ns.root ? long(m.uid) : -1, m.gid, &m.started);
}

}  // namespace hf
