#include "tree_copy.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace hf {

namespace {

struct Dirent64 {
    ino64_t d_ino;
    off64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

// Calls fn(name) for every entry but . and ..; false as soon as fn is (or reading fails).
template <class F>
bool each_entry(int dir, F&& fn) {
    char buf[4096];
    if (lseek(dir, 0, SEEK_SET) < 0) return false;  // a second pass over the same fd
    for (;;) {
        long n = syscall(SYS_getdents64, dir, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return n == 0;
        for (long off = 0; off < n;) {
            auto* d = reinterpret_cast<Dirent64*>(buf + off);
            off += d->d_reclen;
            const char* s = d->d_name;
            if (s[0] == '.' && (s[1] == 0 || (s[1] == '.' && s[2] == 0))) continue;
            if (!fn(s)) return false;
        }
    }
}

bool remove_entry(int dir, const char* name, int depth) {
    if (unlinkat(dir, name, 0) == 0 || errno == ENOENT) return true;
    if (errno != EISDIR && errno != EPERM) return false;
    if (depth > kMaxDepth) { errno = ELOOP; return false; }
    int sub = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) return false;
    bool ok = each_entry(sub, [&](const char* n) { return remove_entry(sub, n, depth + 1); });
    close(sub);
    return ok && (unlinkat(dir, name, AT_REMOVEDIR) == 0 || errno == ENOENT);
}

bool same_time(const timespec& a, const timespec& b) { return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec; }

const char* copy_file(int from, int to, const char* name, const struct stat& st, long uid, gid_t gid) {
    int in = openat(from, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (in < 0) return errno == ENOENT ? nullptr : "open a file to copy";
    int out = openat(to, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) { int e = errno; close(in); errno = e; return "create a copy"; }
    const char* bad = nullptr;
    for (;;) {
        ssize_t n = sendfile(out, in, nullptr, size_t(1) << 30);
        if (n > 0) continue;
        if (n == 0) break;
        if (errno == EINTR) continue;
        bad = "copy a file";
        break;
    }
    int e = errno;
    if (!bad && uid >= 0 && fchown(out, uid_t(uid), gid) != 0) { bad = "chown a copy"; e = errno; }
    // Set-uid/set-gid bits are dropped: the copy's owner is not the original's.
    if (!bad && fchmod(out, st.st_mode & 0777) != 0) { bad = "chmod a copy"; e = errno; }
    timespec times[2] = {st.st_atim, st.st_mtim};
    if (!bad) futimens(out, times);
    close(in);
    close(out);
    errno = e;
    return bad;
}

}  // namespace

static bool newer(const timespec& t, const timespec* since) {
    return since && (t.tv_sec > since->tv_sec || (t.tv_sec == since->tv_sec && t.tv_nsec > since->tv_nsec));
}

const char* mirror_dir(int from, int to, long uid, gid_t gid, const timespec* keep_since, int depth) {
    if (depth > kMaxDepth) return nullptr;  // deeper trees are not carried over
    const char* bad = nullptr;
    // Pass 1: drop what `from` lacks.
    bool ok = each_entry(to, [&](const char* name) {
        struct stat s;
        if (fstatat(from, name, &s, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT) return true;
        if (keep_since && fstatat(to, name, &s, AT_SYMLINK_NOFOLLOW) == 0 && newer(s.st_ctim, keep_since)) return true;
        if (!remove_entry(to, name, depth)) bad = "remove a file";
        return !bad;
    });
    if (bad) return bad;
    if (!ok) return "read a directory";
    // Pass 2: copy what is new or changed.
    ok = each_entry(from, [&](const char* name) {
        struct stat s, d;
        if (fstatat(from, name, &s, AT_SYMLINK_NOFOLLOW) != 0) return true;  // gone meanwhile
        bool have = fstatat(to, name, &d, AT_SYMLINK_NOFOLLOW) == 0;
        if (have && (d.st_mode & S_IFMT) != (s.st_mode & S_IFMT)) {
            if (!remove_entry(to, name, depth)) { bad = "remove a file"; return false; }
            have = false;
        }
        if (S_ISREG(s.st_mode)) {
            if (have && d.st_size == s.st_size && (d.st_mode & 07777) == (s.st_mode & 0777) &&
                same_time(d.st_mtim, s.st_mtim))
                return true;
            if (have && unlinkat(to, name, 0) != 0 && errno != ENOENT) { bad = "replace a file"; return false; }
            bad = copy_file(from, to, name, s, uid, gid);
        } else if (S_ISDIR(s.st_mode)) {
            if (!have) {
                if (mkdirat(to, name, 0700) != 0) { bad = "make a directory"; return false; }
                if (uid >= 0 && fchownat(to, name, uid_t(uid), gid, AT_SYMLINK_NOFOLLOW) != 0) { bad = "chown a directory"; return false; }
            }
            int a = openat(from, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            int b = openat(to, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (a >= 0 && b >= 0) {
                bad = mirror_dir(a, b, uid, gid, keep_since, depth + 1);
                if (!bad && fchmod(b, s.st_mode & 03777) != 0) bad = "chmod a directory";
            } else if (a >= 0 || errno != ENOENT) {
                bad = "open a directory";
            }
            int e = errno;
            if (a >= 0) close(a);
            if (b >= 0) close(b);
            errno = e;
        } else if (S_ISLNK(s.st_mode)) {
            char target[4096], old[4096];
            ssize_t n = readlinkat(from, name, target, sizeof target - 1);
            if (n < 0) return true;
            target[n] = 0;
            if (have) {
                ssize_t m = readlinkat(to, name, old, sizeof old - 1);
                if (m == n && std::memcmp(old, target, size_t(n)) == 0) return true;
                if (unlinkat(to, name, 0) != 0 && errno != ENOENT) { bad = "replace a symlink"; return false; }
            }
            if (symlinkat(target, to, name) != 0) { bad = "make a symlink"; return false; }
            if (uid >= 0) fchownat(to, name, uid_t(uid), gid, AT_SYMLINK_NOFOLLOW);
        }
        // Fifos, sockets and device nodes are not carried over.
        return !bad;
    });
    if (bad) return bad;
    return ok ? nullptr : "read a directory";
}

}  // namespace hf
