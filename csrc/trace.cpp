#include "trace.hpp"

#include <algorithm>
#include <cstdio>
#include <time.h>

namespace hf {

bool g_trace = false;

int64_t mono_ns() {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return int64_t(t.tv_sec) * 1000000000 + t.tv_nsec;
}

void TraceSummary::add(Steps& t) {
    std::stable_sort(t.begin(), t.end(), [](auto& a, auto& b) { return a.second < b.second; });
    int64_t arrival = -1;
    for (auto& [step, ns] : t)
        if (step == "zygote: run arrives") arrival = ns;
    if (arrival < 0) return;  // a spare that never had a run
    for (size_t i = 1; i < t.size(); ++i) {
        StepSum& s = sums_[t[i].first];
        s.us += double(t[i].second - t[i - 1].second) * 1e-3;
        s.offset_us += double(t[i].second - arrival) * 1e-3;
        s.n += 1;
    }
}

void TraceSummary::print() const {
    if (sums_.empty()) return;
    std::vector<std::pair<std::string, StepSum>> steps(sums_.begin(), sums_.end());
    auto offset = [](const StepSum& s) { return s.offset_us / double(s.n); };
    std::sort(steps.begin(), steps.end(), [&](auto& a, auto& b) { return offset(a.second) < offset(b.second); });
    double answered = 0, critical = 0;
    for (auto& [name, s] : steps)
        if (name == "zygote: kDone read") answered = offset(s);
    dprintf(2, "halo-forge sandbox trace: mean microseconds per step (step ends at the label)\n");
    for (auto& [name, s] : steps) {
        double mean = s.us / double(s.n);
        dprintf(2, "  %-36s %9.1f  (n=%ld)\n", name.c_str(), mean, s.n);
        // From the run's arrival to its answer the caller waits; before, the init was a
        // spare; after, the init's exit tears its namespaces down.
        if (offset(s) > 0 && offset(s) <= answered) critical += mean;
    }
    dprintf(2, "  %-36s %9.1f\n", "from the run's arrival to its answer", critical);
}

}  // namespace hf
