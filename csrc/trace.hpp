// Per-step timing of a run's set-up, for finding where launch time goes.
// HALO_SANDBOX_TRACE=1 in the caller's environment: the init reports a timestamp after each
// step and the zygote prints the mean time per step to stderr when it exits. Off: one branch.
#pragma once

#include <cstdint>

namespace hf {

extern bool g_trace;
int64_t mono_ns();
// In a run's init: `step` just ended (a record on the report pipe when tracing is on).
void trace_point(int report_w, const char* step);

}  // namespace hf
