// Wire format between the Python-side client and the zygote process.
//
// Frames on a SOCK_STREAM socketpair: u32 little-endian length, then the body. Bodies are
// built with Writer and parsed with Reader; both sides are this same code, so the format
// needs no versioning beyond "same build".
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace hf {

enum class Msg : uint8_t { Hello = 1, Run = 2, Cancel = 3, Shutdown = 4, Result = 5, Stats = 6, StatsReply = 7,
                        Template = 8 };

// What a run may use; mirrors halo_forge.sandbox.Limits.
struct Limits {
    double cpu_s = 5.0;
    double wall_s = 10.0;
    int64_t memory_mb = 1024;
    int64_t output_bytes = 1 << 20;
    int64_t file_size_mb = 64;
    int64_t processes = 64;
    int64_t open_files = 256;
    int64_t stack_mb = 8;
    int64_t disk_mb = 256;  // the run's tmpfs: workdir and /tmp together
};

struct RunRequest {
    uint64_t id = 0;
    std::string exe;                // absolute (host PATH-resolved) or cwd-relative path
    std::vector<std::string> argv;
    std::vector<std::string> envp;  // "K=V", already allow-listed by the facade
    std::string cwd;                // absolute host path of the workdir
    std::string stdin_data;
    std::vector<std::string> ro_paths;  // extra host directories to show read-only
    Limits limits;
    // Non-zero: this run is one of a wired pair (an interactive problem's solution and its
    // interactor): each one's stdout is the other's stdin, neither is captured. Both requests
    // name each other; the zygote starts them together once both have arrived.
    uint64_t peer = 0;
    // A Python run the zygote's warm template may serve (a fork of an interpreter that has
    // the judge loaded) instead of an interpreter start; argv and stdin stay those of the
    // cold run, which is what runs when no template is up.
    bool warm = false;
    int handovers = 0;  // the zygote's own count (not sent): inits that died before taking it
    std::shared_ptr<RunRequest> partner;  // the zygote's (not sent): the pair's other run, queued with this one
};

enum class Status : uint8_t { Ok = 0, RuntimeError, Timeout, MemoryLimit, OutputLimit, SandboxError };

struct RunResult {
    uint64_t id = 0;
    Status status = Status::SandboxError;
    bool exited = false;  // true: exit_code valid; false: signal valid (or neither, on error)
    int32_t exit_code = 0;
    int32_t signal = 0;
    double cpu_s = 0, wall_s = 0;
    int64_t peak_memory_kb = 0;
    std::string out, err;
    bool out_truncated = false, err_truncated = false;
    std::string error;
};

class Writer {
public:
    Writer() { buf_.resize(4); }
    template <class T> void pod(T v) { buf_.append(reinterpret_cast<const char*>(&v), sizeof v); }
    void str(std::string_view s) { pod<uint32_t>(uint32_t(s.size())); buf_.append(s); }
    void strs(const std::vector<std::string>& v) {
        pod<uint32_t>(uint32_t(v.size()));
        for (auto& s : v) str(s);
    }
    // Finishes the frame (fills in the length prefix) and hands the bytes over.
    std::string take() {
        uint32_t n = uint32_t(buf_.size() - 4);
        std::memcpy(buf_.data(), &n, 4);
        return std::move(buf_);
    }
private:
    std::string buf_;
};

class Reader {
public:
    explicit Reader(std::string_view b) : b_(b) {}
    bool ok() const { return ok_; }
    template <class T> T pod() {
        T v{};
        if (b_.size() < sizeof v) { ok_ = false; return v; }
        std::memcpy(&v, b_.data(), sizeof v);
        b_.remove_prefix(sizeof v);
        return v;
    }
    std::string str() {
        uint32_t n = pod<uint32_t>();
        if (!ok_ || b_.size() < n) { ok_ = false; return {}; }
        std::string s(b_.substr(0, n));
        b_.remove_prefix(n);
        return s;
    }
    std::vector<std::string> strs() {
        uint32_t n = pod<uint32_t>();
        std::vector<std::string> v;
        if (!ok_ || n > b_.size()) { ok_ = false; return v; }
        v.reserve(n);
        for (uint32_t i = 0; i < n && ok_; ++i) v.push_back(str());
        return v;
    }
private:
    std::string_view b_;
    bool ok_ = true;
};

std::string encode_run(const RunRequest& r);
bool decode_run(Reader& rd, RunRequest& r);  // after the Msg byte and id
// The warm Python template's command (exe, argv, envp, stdin_data), once per sandbox.
std::string encode_template(const RunRequest& r);
std::string encode_result(const RunResult& r);
bool decode_result(Reader& rd, RunResult& r);

// Splits complete frames off the front of `buf`; returns their bodies.
std::vector<std::string> split_frames(std::string& buf);

}  // namespace hf
