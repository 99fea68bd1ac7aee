// The Sandbox's base directory (/tmp/halo-forge-sandbox-XXXX: the template's mount point and
// every workdir). The facade removes it on close; when the owner is killed (SIGKILL) it never
// gets to, so the zygote removes it as it exits. The zygote claims the directory at start-up,
// before it changes namespaces, and afterwards reaches it only through a descriptor of its
// parent: a path that later leads elsewhere (a rename, a symlink) is never followed.
#pragma once

#include <string>
#include <sys/types.h>

namespace hf {

struct OwnedDir {
    int parent = -1;   // O_PATH descriptor of the directory that holds it
    std::string name;  // its name there
    dev_t dev = 0;     // what `name` was when claimed
    ino_t ino = 0;
};

// Claims `path` only if it is what the facade creates: an absolute path to a real directory
// (not a symlink) named halo-forge-sandbox-*, owned by this process's user, mode 0700.
// Returns "" or why not (then nothing will be removed).
std::string claim_dir(const std::string& path, OwnedDir& out);

// Removes the claimed directory and everything below it, provided its name still leads to
// the very directory claimed. Never follows a symlink and never descends into another
// filesystem (a mount point found inside is left, and with it the directory).
void remove_claimed(const OwnedDir& d);

}  // namespace hf
