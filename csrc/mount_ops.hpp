// File and mount helpers shared by the zygote's setup (zygote_setup.cpp) and the runs' mounts
// (namespaces.cpp).
#pragma once

#include <cstddef>
#include <string>
#include <sys/types.h>

namespace hf {

// "what: <strerror(e)>", the form every reason and error here takes.
std::string err(const char* what, int e);

// Writes `data` to an existing file (a /proc knob). The char* forms do not allocate: a run's
// init calls them, sharing the zygote's heap.
bool write_file(const char* path, const char* data, size_t len);
bool write_file(const char* path, const char* data);
bool write_file(const char* path, const std::string& data);

bool mkdir_p(const std::string& path, mode_t mode);

// Flags a remount must keep: the kernel refuses to clear ones inherited from a more
// privileged namespace (nosuid, nodev, noexec, atime), so carry over whatever is set.
unsigned long kept_flags(const char* path);

// Binds `src` at `dst` read-only (device nodes stay writable). Returns "" or why not.
std::string bind_ro(const std::string& src, const std::string& dst, bool device);

// The template is read-only except while the zygote adds a mount point to it.
std::string set_root_readonly(bool ro);

}  // namespace hf
