// The zygote's setup, before any run: its own namespaces, which per-run namespaces work here,
// the run ids, the read-only template root. An ordered table of steps (zygote_setup.cpp),
// each returning "" or the reason the protection it serves is off.
#pragma once

#include "namespaces.hpp"

#include <string>
#include <vector>

namespace hf {

// Runs the steps in order (single-threaded process, before any run); a step that fails turns
// its protection off with the reason and the rest carry on. `slots`: how many inits may exist
// at once (as root, each has a run uid of its own).
void setup_zygote(NsPlan& ns, std::vector<Protection>& prot, const std::string& base_dir, bool share_ipc, int slots);

}  // namespace hf
