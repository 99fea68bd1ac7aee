#include "base_dir.hpp"

#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vector>

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452  // same number on every architecture (Linux 6.6)
#endif

namespace hf {

namespace {

constexpr const char* kPrefix = "halo-forge-sandbox-";
constexpr int kMaxDepth = 256;

// A run may leave a directory without read/search permission; an ordinary user (no
// CAP_DAC_OVERRIDE over it) must give it back before emptying it. Never follows a symlink.
int open_subdir(int dirfd, const char* name, const struct stat& st) {
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == EACCES && syscall(SYS_fchmodat2, dirfd, name, 0700, AT_SYMLINK_NOFOLLOW) == 0)
        fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat now;
    if (fstat(fd, &now) != 0 || now.st_dev != st.st_dev || now.st_ino != st.st_ino) {
        close(fd);  // replaced between the look and the open
        return -1;
    }
    return fd;
}

void empty_dir(int fd, dev_t dev, int depth) {
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    DIR* d = dup >= 0 ? fdopendir(dup) : nullptr;
    if (!d) {
        if (dup >= 0) close(dup);
        return;
    }
    // Read the names first: removing while iterating may skip entries.
    std::vector<std::string> names;
    while (dirent* e = readdir(d))
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.emplace_back(e->d_name);
    closedir(d);
    // Without write permission on the directory nothing in it can go.
    struct stat self;
    if (fstat(fd, &self) == 0 && (self.st_mode & 0700) != 0700) fchmod(fd, 0700);
    for (auto& n : names) {
        struct stat st;
        if (fstatat(fd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        if (!S_ISDIR(st.st_mode)) {
            unlinkat(fd, n.c_str(), 0);
            continue;
        }
        if (st.st_dev != dev || depth >= kMaxDepth) continue;  // a mount point, or absurdly deep
        int sub = open_subdir(fd, n.c_str(), st);
        if (sub < 0) continue;
        empty_dir(sub, dev, depth + 1);
        close(sub);
        unlinkat(fd, n.c_str(), AT_REMOVEDIR);
    }
}

}  // namespace

std::string claim_dir(const std::string& path, OwnedDir& out) {
    size_t slash = path.rfind('/');
    if (path.empty() || path[0] != '/' || slash == std::string::npos) return "not an absolute path";
    std::string name = path.substr(slash + 1);
    std::string parent = slash == 0 ? "/" : path.substr(0, slash);
    if (name.compare(0, std::strlen(kPrefix), kPrefix) != 0) return std::string("name does not start with ") + kPrefix;
    int pfd = open(parent.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0) return std::string("open parent: ") + std::strerror(errno);
    struct stat st;
    std::string why;
    if (fstatat(pfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) why = std::string("stat: ") + std::strerror(errno);
    else if (!S_ISDIR(st.st_mode)) why = "not a directory";
    else if (st.st_uid != geteuid()) why = "not owned by this user";
    else if ((st.st_mode & 07777) != 0700) why = "mode is not 0700";
    if (!why.empty()) {
        close(pfd);
        return why;
    }
    out.parent = pfd;
    out.name = name;
    out.dev = st.st_dev;
    out.ino = st.st_ino;
    return {};
}

void remove_claimed(const OwnedDir& d) {
    if (d.parent < 0) return;
    struct stat st;
    if (fstatat(d.parent, d.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode) ||
        st.st_dev != d.dev || st.st_ino != d.ino)
        return;  // gone already (the facade removed it) or no longer ours
    int fd = open_subdir(d.parent, d.name.c_str(), st);
    if (fd < 0) return;
    empty_dir(fd, d.dev, 0);
    close(fd);
    // An emptied directory only: if the name was swapped meanwhile, rmdir of a full one fails.
    if (fstatat(d.parent, d.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == d.dev && st.st_ino == d.ino)
        unlinkat(d.parent, d.name.c_str(), AT_REMOVEDIR);
}

}  // namespace hf
