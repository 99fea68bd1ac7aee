// The caller's side of the zygote: starts it, sends run requests, hands back results.
// Owned by halo_forge.sandbox.Sandbox; its fileno() is what the async facade waits on.
#pragma once

#include "protocol.hpp"

#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace hf {

class Client {
public:
    // Starts the zygote executable (halo-forge-zygote, installed beside the module); waits
    // for its hello. Throws std::runtime_error when it cannot start.
    // `spares`: inits the zygote keeps prepared ahead of their runs.
    Client(const std::string& zygote, const std::string& base_dir, int max_concurrency, int spares);
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    void submit(const RunRequest& r);   // throws std::runtime_error if the zygote is gone
    // Starts the warm Python template (exe/argv/envp, stdin_data on its stdin); see zygote.cpp.
    void start_template(const RunRequest& r) { send_all(encode_template(r)); }
    void cancel(uint64_t id);
    // Results that have arrived (never blocks). `alive` turns false once the zygote is gone.
    std::vector<RunResult> take(bool& alive);
    void close();  // stops every run, reaps the zygote; idempotent

    int fileno() const { return fd_; }
    pid_t zygote_pid() const { return pid_; }
    const std::vector<std::pair<std::string, std::string>>& protections() const { return prot_; }
    uint32_t run_uid() const { return run_uid_; }
    uint32_t run_gid() const { return run_gid_; }
    bool chown_workdirs() const { return chown_; }

private:
    void send_all(const std::string& frame);
    int fd_ = -1;
    pid_t pid_ = -1;
    std::string inbuf_;
    std::vector<std::pair<std::string, std::string>> prot_;
    uint32_t run_uid_ = 0, run_gid_ = 0;
    bool chown_ = false;
};

}  // namespace hf
