#include "client.hpp"
#include "drain.hpp"

#include <cerrno>
#include <cstdlib>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace hf {

namespace {

[[noreturn]] void fail(const std::string& what, int e) {
    throw std::runtime_error(what + ": " + std::strerror(e));
}

}  // namespace

Client::Client(const std::string& zygote, const std::string& base_dir, int max_concurrency, int spares) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) fail("socketpair", errno);
    // Hand the zygote its end at a fixed number; dup2 onto itself would keep CLOEXEC.
    int child = fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
    ::close(sv[1]);
    std::string fdarg = std::to_string(3), conc = std::to_string(max_concurrency), spare = std::to_string(spares);
    const char* argv[] = {zygote.c_str(), fdarg.c_str(), base_dir.c_str(), conc.c_str(), spare.c_str(), nullptr};
    // Nothing of the caller's environment reaches the zygote but the trace switch.
    const char* envp[] = {"LANG=C.UTF-8", getenv("HALO_SANDBOX_TRACE") ? "HALO_SANDBOX_TRACE=1" : nullptr, nullptr};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, child, 3);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawnattr_init(&at);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    // Its own process group: a terminal's Ctrl-C reaches the caller, which then closes us.
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    int rc = posix_spawn(&pid_, zygote.c_str(), &fa, &at, const_cast<char* const*>(argv),
                         const_cast<char* const*>(envp));
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    ::close(child);
    if (rc != 0) {
        ::close(sv[0]);
        fail("starting the sandbox zygote (" + zygote + ")", rc);
    }
    fd_ = sv[0];

    fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) | O_NONBLOCK);
    // Wait for the hello (the zygote's setup is a handful of mounts: milliseconds).
    std::string buf;
    for (;;) {
        pollfd p{fd_, POLLIN, 0};
        int n = poll(&p, 1, 60000);
        if (n == 0) { close(); throw std::runtime_error("the sandbox zygote did not start within 60 s"); }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { int e = errno; close(); fail("waiting for the sandbox zygote", e); }
        bool closed = drain(fd_, buf) == Drained::Closed;
        auto frames = split_frames(buf);
        if (frames.empty() && closed) {
            close();
            throw std::runtime_error("the sandbox zygote exited during start-up (see its message above)");
        }
        if (frames.empty()) continue;
        Reader rd(frames[0]);
        if (rd.pod<Msg>() != Msg::Hello) { close(); throw std::runtime_error("sandbox zygote: bad hello"); }
        uint32_t n_prot = rd.pod<uint32_t>();
        for (uint32_t i = 0; i < n_prot && rd.ok(); ++i) {
            std::string name = rd.str();
            prot_.emplace_back(name, rd.str());
        }
        run_uid_ = rd.pod<uint32_t>();
        run_gid_ = rd.pod<uint32_t>();
        chown_ = rd.pod<uint8_t>();
        if (!rd.ok()) { close(); throw std::runtime_error("sandbox zygote: truncated hello"); }
        inbuf_ = buf;
        break;
    }
}

Client::~Client() { close(); }

void Client::send_all(const std::string& frame) {
    if (fd_ < 0) throw std::runtime_error("the sandbox is closed");
    size_t off = 0;
    while (off < frame.size()) {
        ssize_t n = ::send(fd_, frame.data() + off, frame.size() - off, MSG_NOSIGNAL);
        if (n > 0) { off += size_t(n); continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            // The zygote reads continuously; a full buffer only means a large stdin.
            pollfd p{fd_, POLLOUT, 0};
            poll(&p, 1, 1000);
            continue;
        }
        fail("sending to the sandbox zygote", errno);
    }
}

void Client::submit(const RunRequest& r) { send_all(encode_run(r)); }

void Client::cancel(uint64_t id) {
    Writer w;
    w.pod(Msg::Cancel);
    w.pod(id);
    try { send_all(w.take()); } catch (const std::runtime_error&) {}
}

std::vector<RunResult> Client::take(bool& alive) {
    alive = fd_ >= 0;
    std::vector<RunResult> out;
    if (fd_ < 0) return out;
    if (drain(fd_, inbuf_) == Drained::Closed) alive = false;
    for (auto& body : split_frames(inbuf_)) {
        Reader rd(body);
        if (rd.pod<Msg>() != Msg::Result) continue;
        RunResult res;
        res.id = rd.pod<uint64_t>();
        if (decode_result(rd, res)) out.push_back(std::move(res));
    }
    return out;
}

void Client::close() {
    if (fd_ >= 0) {
        ::close(fd_);  // EOF: the zygote kills every run and exits
        fd_ = -1;
    }
    if (pid_ > 0) {
        int pidfd = int(syscall(SYS_pidfd_open, pid_, 0));
        if (pidfd >= 0) {
            pollfd p{pidfd, POLLIN, 0};
            if (poll(&p, 1, 10000) == 0) kill(pid_, SIGKILL);  // its runs die with it (PDEATHSIG)
            ::close(pidfd);
        }
        while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {}
        pid_ = -1;
    }
}

}  // namespace hf
