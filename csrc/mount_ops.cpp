#include "mount_ops.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

namespace hf {

std::string err(const char* what, int e) { return std::string(what) + ": " + std::strerror(e); }

bool write_file(const char* path, const char* data, size_t len) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    ssize_t n = write(fd, data, len);
    int e = errno;
    close(fd);
    errno = e;
    return n == ssize_t(len);
}

bool write_file(const char* path, const char* data) { return write_file(path, data, std::strlen(data)); }

bool write_file(const char* path, const std::string& data) { return write_file(path, data.data(), data.size()); }

bool mkdir_p(const std::string& path, mode_t mode) {
    std::string cur;
    size_t i = 0;
    while (i < path.size()) {
        size_t j = path.find('/', i + 1);
        if (j == std::string::npos) j = path.size();
        cur = path.substr(0, j);
        if (!cur.empty() && mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) return false;
        i = j;
    }
    return true;
}

unsigned long kept_flags(const char* path) {
    struct statvfs s;
    if (statvfs(path, &s) != 0) return 0;
    unsigned long f = 0;
    if (s.f_flag & ST_NOSUID) f |= MS_NOSUID;
    if (s.f_flag & ST_NODEV) f |= MS_NODEV;
    if (s.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
    if (s.f_flag & ST_NOATIME) f |= MS_NOATIME;
    if (s.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
    if (s.f_flag & ST_RELATIME) f |= MS_RELATIME;
    return f;
}

std::string bind_ro(const std::string& src, const std::string& dst, bool device) {
    struct stat st;
    if (stat(src.c_str(), &st) != 0) return err(("stat " + src).c_str(), errno);
    if (S_ISDIR(st.st_mode)) {
        if (!mkdir_p(dst, 0755)) return err(("mkdir " + dst).c_str(), errno);
    } else {
        auto slash = dst.rfind('/');
        if (!mkdir_p(dst.substr(0, slash), 0755)) return err(("mkdir " + dst).c_str(), errno);
        int fd = open(dst.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) return err(("create " + dst).c_str(), errno);
        close(fd);
    }
    if (mount(src.c_str(), dst.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
        return err(("bind " + src).c_str(), errno);
    // Device nodes stay writable (/dev/null); everything else is read-only.
    unsigned long f = MS_REMOUNT | MS_BIND | MS_NOSUID | kept_flags(dst.c_str());
    if (!device) f |= MS_NODEV | MS_RDONLY;
    if (mount(nullptr, dst.c_str(), nullptr, f, nullptr) != 0)
        return err(("remount read-only " + dst).c_str(), errno);
    return {};
}

std::string set_root_readonly(bool ro) {
    unsigned long f = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | kept_flags("/");
    if (ro) f |= MS_RDONLY;
    if (mount(nullptr, "/", nullptr, f, nullptr) != 0) return err(ro ? "remount template read-only" : "remount template writable", errno);
    return {};
}

}  // namespace hf
