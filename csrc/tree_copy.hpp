// Mirroring a directory tree between the host workdir and a run's size-capped tmpfs.
//
// Runs in a run's init (forked from the zygote): syscalls and stack buffers only. The tmpfs
// side is written by a hostile program, so nothing is followed: symlinks are copied as
// symlinks, only regular files are opened (O_NOFOLLOW), other file types are skipped, and
// the walk stops at kMaxDepth.
#pragma once

#include <sys/types.h>
#include <time.h>

namespace hf {

constexpr int kMaxDepth = 64;

// Makes directory `to` hold what directory `from` holds: directories, regular files (content,
// permission bits without set-uid/set-gid on files, mtime) and symlinks. Entries of `to` that
// `from` lacks are removed; files whose size, mode and mtime already match are left alone.
// `chown_to` >= 0: new entries get that owner and `chown_group` (root hands them to the
// program's ids). `keep_since`: entries of `to` changed after it are never removed
// (a concurrent run in the same workdir made them after this run took its copy).
// Returns nullptr, or the step that failed (errno set).
const char* mirror_dir(int from, int to, long chown_to, gid_t chown_group, const timespec* keep_since = nullptr,
                       int depth = 0);

}  // namespace hf
