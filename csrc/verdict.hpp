// How a finished run is classified: the status, exit code or signal and error the caller
// sees. Pure (no syscalls, no processes), so tests reach every branch through
// halo_forge._sandbox.judge without having to make a program die each way.
#pragma once

#include "protocol.hpp"
#include "report.hpp"

#include <string>

namespace hf {

// Why the zygote itself killed a run (None: it did not).
enum class Kill { None, Wall, Output, Cancel, Shutdown };

// Sets res.status, exited, exit_code, signal and error. `last`: the init's last kDone or
// failure report (kind 0: none came). `res` comes in with cpu_s, peak_memory_kb and err
// filled, which the verdict reads; `exe` names the program in an execve error.
void judge(RunResult& res, const ChildReport& last, Kill killed, const Limits& l, const std::string& exe);

}  // namespace hf
