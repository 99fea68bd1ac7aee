// The seccomp-BPF filter every sandboxed program runs under.
#pragma once

#include <linux/filter.h>
#include <string>
#include <vector>

namespace hf {

// Builds the filter for this architecture. Returns an empty program and sets `why` when the
// architecture is not one the filter knows (then seccomp is reported off, not guessed).
std::vector<sock_filter> build_seccomp_filter(std::string& why);

// NO_NEW_PRIVS + install. Async-signal-safe; returns false with errno set.
bool install_seccomp(const std::vector<sock_filter>& prog);

}  // namespace hf
