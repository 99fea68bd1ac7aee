#include "zygote.hpp"

#include "base_dir.hpp"
#include "drain.hpp"
#include "limits.hpp"
#include "memory_pool.hpp"
#include "namespaces.hpp"
#include "protocol.hpp"
#include "seccomp.hpp"
#include "spawn.hpp"
#include "verdict.hpp"
#include "zygote_setup.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <algorithm>
#include <deque>
#include <fcntl.h>
#include <memory>
#include <poll.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <unordered_map>

namespace hf {

namespace {

double now() {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
}

int init_entry(void* plan) { run_init(*static_cast<const ChildPlan*>(plan)); }

enum Role : uint32_t { kCtl = 0, kPidfd = 1, kOut = 2, kErr = 3, kTimer = 4, kReport = 5, kParent = 6, kTemplate = 7 };

// One run's init, from the moment it is prepared (a spare, waiting for a run) until it is
// reaped. `req.id` is the run's id once it has one.
struct Job {
    RunRequest req;
    pid_t pid = -1;
    int pidfd = -1, out_r = -1, err_r = -1, report_r = -1, timer = -1;
    int go_w = -1;   // the init waits for a byte here
    int stdin_w = -1;  // the zygote's end of the init's stdin memfd, until the run is handed over
    double start = 0;
    std::string out, err;
    bool out_trunc = false, err_trunc = false;
    Kill killed = Kill::None;
    pid_t program = -1;
    int slot = -1;
    TraceSummary::Steps trace;  // HALO_SANDBOX_TRACE: the zygote's steps
    TraceLog tlog;  // the init's and the program's steps (shared memory)
    RunMounts mounts;
    bool answered = false;  // result sent at the init's kDone; only its exit is left to reap
    ChildReport last{};     // the last kDone/failure report
    // What the init reads, alive until it is reaped (it shares the zygote's memory).
    std::vector<char*> argv, envp;
    ChildPlan plan{};
    std::unique_ptr<InitMemory> mem, program_mem;
    bool spare = false;  // prepared, waiting for a run in spares_
    // The warm Python path: what the template's fork gets (the init's pidfd aside), held
    // until the init reports kWarmReady or the run turns out to be cold.
    int warm_w = -1, warm_in = -1, warm_out = -1, warm_err = -1;
};

void close_fd(int& fd) {
    if (fd >= 0) close(fd);
    fd = -1;
}

class Zygote {
public:
    Zygote(int ctl, std::string base, int max_conc, int spares)
        : ctl_(ctl), base_(std::move(base)), max_(max_conc), spares_target_(spares) {}

    [[noreturn]] void run() {
        setup();
        replenish();  // after the hello: the caller does not wait for the spares
        for (;;) {
            epoll_event ev[64];
            int n = epoll_wait(ep_, ev, 64, -1);
            if (n < 0 && errno != EINTR) die("epoll_wait");
            for (int i = 0; i < n; ++i) dispatch(ev[i]);
            start_queued();
            replenish();
            if (closing_ && jobs_.empty()) finish();
        }
    }

private:
    int ctl_, ep_ = -1;
    int parent_ = -1;          // pidfd of the owner: a fork of it may hold the socket open
    OwnedDir owned_;           // the base directory, removed on exit
    int alive_[2] = {-1, -1};  // the runs' inits watch alive_[0]; nobody ever writes alive_[1]
    std::string base_;
    int max_;
    NsPlan ns_;
    std::vector<Protection> prot_;
    std::vector<sock_filter> filter_;
    std::string inbuf_, outbuf_;
    bool want_out_ = false, closing_ = false;
    std::deque<RunRequest> queue_;  // a wired pair is one entry: the first run, its partner inside
    // The first-arrived run of a wired pair, by id, until its peer's request arrives.
    std::unordered_map<uint64_t, RunRequest> unpaired_;
    std::unordered_map<uint64_t, std::unique_ptr<Job>> jobs_;
    // Prepared inits, waiting for a run (all made with spare_opts_). Preparing one (clone
    // with new namespaces, mounts, seccomp) is most of a run's set-up: done ahead, it is off
    // the run's critical path.
    int spares_target_;
    std::deque<std::unique_ptr<Job>> spares_;
    std::string spare_opts_;
    uint64_t retired_ = 0;  // ids for inits reaped without a run (high bit set)
    std::unordered_map<int, std::pair<Job*, Role>> fds_;
    MemoryPool pool_;
    std::vector<char> slot_used_;
    int active_ = 0;  // jobs not yet answered (the concurrency limit counts these)
    TraceSummary trace_sum_;
    // The warm Python template (start_template): a process that has Python up and the judge
    // loaded, started on the caller's word before it sends a run, with a socket to this one only.
    pid_t tpl_pid_ = -1;
    int tpl_fd_ = -1, tpl_pidfd_ = -1;

    // A uid slot per init: the running ones, the spares, and one more so that a wired pair
    // (two inits) starts even when one run at a time is allowed.
    int slots() const { return max_ + spares_target_ + 1; }

    void trace(Job* j, const char* step) {
        if (g_trace) j->trace.emplace_back(step, mono_ns());
    }

    void account_trace(Job* j) {
        for (int i = 0; i < j->tlog.n; ++i) j->trace.emplace_back(j->tlog.e[i].step, j->tlog.e[i].ns);
        trace_sum_.add(j->trace);
    }

    [[noreturn]] void die(const char* what) {
        dprintf(2, "halo-forge sandbox zygote: %s: %s\n", what, std::strerror(errno));
        _exit(1);
    }

    void setup() {
        signal(SIGPIPE, SIG_IGN);
        // Each run holds ~6 descriptors here; hundreds run at once.
        rlimit r;
        if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
            r.rlim_cur = r.rlim_max;
            setrlimit(RLIMIT_NOFILE, &r);
        }
        g_trace = getenv("HALO_SANDBOX_TRACE") != nullptr;
        // Before any namespace changes: the descriptor then shows the owner's view of it.
        std::string not_ours = claim_dir(base_, owned_);
        if (!not_ours.empty()) dprintf(2, "halo-forge sandbox zygote: will not remove %s on exit: %s\n", base_.c_str(), not_ours.c_str());
        std::string why;
        filter_ = build_seccomp_filter(why);
        // Runs may share one IPC namespace only where the filter stops them making objects.
        setup_zygote(ns_, prot_, base_, /*share_ipc=*/!filter_.empty(), slots());
        if (pipe2(alive_, O_CLOEXEC) != 0) die("pipe2");
        prot_.push_back({"seccomp", why});
        // Named here on its own: read-only mounts do not stop a connect to a host's socket.
        prot_.push_back({"no_named_unix_sockets",
                         filter_.empty() ? "needs the seccomp filter: a run can connect to unix sockets the host "
                                           "listens on in the folders it sees"
                                         : ""});
        prot_.push_back({"rlimits", ""});
        prot_.push_back({"wall_clock", ""});
        prot_.push_back({"process_tree_kill", ns_.pidns ? "" : "no pid namespace: falling back to setsid + subreaper sweep"});
        prot_.push_back({"environment_allowlist", ""});
#if !defined(__x86_64__)
        // There the init is a copy of this memory, not a sharer: it must have the run at clone.
        spares_target_ = 0;
#endif
        // A uid slot per init: the running ones and the spares.
        slot_used_.assign(size_t(slots()), 0);
        spare_opts_ = tmpfs_opts(Limits{}.disk_mb);
        ep_ = epoll_create1(EPOLL_CLOEXEC);
        if (ep_ < 0) die("epoll_create1");
        fcntl(ctl_, F_SETFL, fcntl(ctl_, F_GETFL) | O_NONBLOCK);
        fcntl(ctl_, F_SETFD, FD_CLOEXEC);
        add(ctl_, nullptr, kCtl, EPOLLIN);
        // The owner's death ends everything even when a child it forked still holds the
        // socket. If it died before this line the parent is already someone else, and the
        // socket's end of file does the same.
        parent_ = int(syscall(SYS_pidfd_open, getppid(), 0));
        if (parent_ >= 0) {
            fcntl(parent_, F_SETFD, FD_CLOEXEC);
            add(parent_, nullptr, kParent, EPOLLIN);
        }
        Writer w;
        w.pod(Msg::Hello);
        w.pod<uint32_t>(uint32_t(prot_.size()));
        for (auto& p : prot_) { w.str(p.name); w.str(p.reason); }
        w.pod<uint32_t>(ns_.run_uid);
        w.pod<uint32_t>(ns_.run_gid);
        w.pod<uint8_t>(ns_.root && ns_.set_ids);  // workdirs must be handed to run_uid
        send(w.take());
    }

    void add(int fd, Job* j, Role role, uint32_t events) {
        epoll_event ev{};
        ev.events = events;
        ev.data.fd = fd;
        if (epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl");
        fds_[fd] = {j, role};
    }

    void drop(int& fd) {
        if (fd < 0) return;
        fds_.erase(fd);
        epoll_ctl(ep_, EPOLL_CTL_DEL, fd, nullptr);
        close_fd(fd);
    }

    void send(std::string frame) {
        outbuf_ += frame;
        flush();
    }

    void flush() {
        while (!outbuf_.empty()) {
            ssize_t n = ::send(ctl_, outbuf_.data(), outbuf_.size(), MSG_NOSIGNAL);
            if (n > 0) { outbuf_.erase(0, size_t(n)); continue; }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            // The caller is gone: nobody wants results any more.
            outbuf_.clear();
            begin_shutdown();
            break;
        }
        bool want = !outbuf_.empty();
        if (want != want_out_) {
            epoll_event ev{};
            ev.events = EPOLLIN | (want ? uint32_t(EPOLLOUT) : 0u);
            ev.data.fd = ctl_;
            epoll_ctl(ep_, EPOLL_CTL_MOD, ctl_, &ev);
            want_out_ = want;
        }
    }

    void dispatch(const epoll_event& ev) {
        auto it = fds_.find(ev.data.fd);
        if (it == fds_.end()) return;
        Job* j = it->second.first;
        switch (it->second.second) {
            case kCtl:
                if (ev.events & EPOLLOUT) flush();
                if (ev.events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_ctl();
                break;
            case kPidfd: reap(j); break;
            case kParent: drop(parent_); begin_shutdown(); break;
            case kTemplate: template_gone(); break;
            case kReport: on_report(j); break;
            case kOut: pump(j, j->out_r, j->out, j->out_trunc); break;
            case kErr: pump(j, j->err_r, j->err, j->err_trunc); break;
            case kTimer: {
                uint64_t x;
                (void)!read(j->timer, &x, sizeof x);
                kill_job(j, Kill::Wall);
                break;
            }
        }
    }

    void read_ctl() {
        if (drain(ctl_, inbuf_) == Drained::Closed) {
            begin_shutdown();  // the caller closed the sandbox or died
            return;
        }
        for (auto& body : split_frames(inbuf_)) {
            Reader rd(body);
            Msg m = rd.pod<Msg>();
            uint64_t id = rd.pod<uint64_t>();
            if (m == Msg::Run) {
                RunRequest r;
                r.id = id;
                if (!decode_run(rd, r)) die("malformed run request");
                if (r.peer != 0) pair_up(std::move(r));
                else queue_.push_back(std::move(r));
            } else if (m == Msg::Template) {
                RunRequest t;
                if (!decode_run(rd, t)) die("malformed template request");
                start_template(t);
            } else if (m == Msg::Cancel) {
                cancel(id);
            } else if (m == Msg::Shutdown) {
                begin_shutdown();
            }
        }
    }

    // Queues a wired pair once both of its requests are here (in either order).
    void pair_up(RunRequest r) {
        auto it = unpaired_.find(r.peer);
        if (it == unpaired_.end() || it->second.peer != r.id) {
            uint64_t id = r.id;
            if (unpaired_.count(id)) return fail_now(id, "a run with this id is already waiting for its peer");
            unpaired_.emplace(id, std::move(r));
            return;
        }
        RunRequest first = std::move(it->second);
        unpaired_.erase(it);
        first.partner = std::make_shared<RunRequest>(std::move(r));
        queue_.push_back(std::move(first));
    }

    void cancel(uint64_t id) {
        auto cancelled = [this](uint64_t which) {
            RunResult res;
            res.id = which;
            res.error = "cancelled before it started";
            send(encode_result(res));
        };
        if (unpaired_.erase(id)) return cancelled(id);
        for (auto it = queue_.begin(); it != queue_.end(); ++it)
            if (it->id == id || (it->partner && it->partner->id == id)) {
                // A pair goes as one: half of it could never run.
                uint64_t other = it->partner ? (it->id == id ? it->partner->id : it->id) : 0;
                queue_.erase(it);
                cancelled(id);
                if (other) cancelled(other);
                return;
            }
        auto it = jobs_.find(id);
        if (it != jobs_.end()) kill_job(it->second.get(), Kill::Cancel);
    }

    void begin_shutdown() {
        if (closing_) return;
        closing_ = true;
        queue_.clear();
        unpaired_.clear();
        retire_spares();
        if (tpl_pidfd_ >= 0) syscall(SYS_pidfd_send_signal, tpl_pidfd_, SIGKILL, nullptr, 0);
        for (auto& [id, j] : jobs_) kill_job(j.get(), Kill::Shutdown);
        if (jobs_.empty()) finish();
    }

    [[noreturn]] void finish() {
        if (g_trace) trace_sum_.print();
        // Best effort: hand over what is left, then go. Runs are all reaped by now.
        fcntl(ctl_, F_SETFL, fcntl(ctl_, F_GETFL) & ~O_NONBLOCK);
        if (!outbuf_.empty()) (void)!::send(ctl_, outbuf_.data(), outbuf_.size(), MSG_NOSIGNAL);
        // The owner removes the directory on close too; killed, it cannot.
        remove_claimed(owned_);
        _exit(0);
    }

    void kill_job(Job* j, Kill why) {
        if (j->answered) return;  // everything but the init is gone, and it is exiting
        if (j->killed == Kill::None) j->killed = why;
        if (ns_.pidns) {
            syscall(SYS_pidfd_send_signal, j->pidfd, SIGKILL, nullptr, 0);
            return;
        }
        // No pid namespace: kill the program's session; the init sweeps the rest and exits.
        if (j->program < 0) read_reports(j);
        if (j->program > 0) kill(-j->program, SIGKILL);
        else syscall(SYS_pidfd_send_signal, j->pidfd, SIGKILL, nullptr, 0);
    }

    // Reads the init's reports; keeps the last kDone/failure record in j->last.
    // Returns true at end of file (the init is exiting).
    bool read_reports(Job* j) {
        ChildReport r;
        ssize_t n = -1;
        while (j->report_r >= 0 && (n = read(j->report_r, &r, sizeof r)) == ssize_t(sizeof r)) {
            if (r.kind == kStarted) j->program = r.value;
            else if (r.kind == kWarmReady) serve_warm(j);
            // A failure to start the program (the vforked child's execve, say) is followed by
            // the init's own kDone for the child's exit 126: the failure is what the caller
            // must see, as a sandbox error, never as the program's runtime error.
            else if (j->last.kind != kSetupFailed && j->last.kind != kExecFailed) j->last = r;
        }
        return j->report_r >= 0 && n == 0;
    }

    // The init reported kDone: the program and everything it started are dead and reaped,
    // so every writer of the output pipes is gone. Answer now; reap the init when it exits
    // (its namespaces' teardown is off the caller's critical path).
    void on_report(Job* j) {
        bool eof = read_reports(j);
        if (j->answered) return;
        if (j->last.kind == kDone && never_launched(j)) return requeue(j);
        if (j->last.kind != kDone) {
            // Killed or failed: the answer comes when the init is reaped. Stop watching a
            // pipe that would stay readable (hung up) until then.
            if (eof) epoll_ctl(ep_, EPOLL_CTL_DEL, j->report_r, nullptr);
            return;
        }
        double wall = now() - j->start;
        trace(j, "zygote: kDone read");
        rusage ru{};
        ru.ru_utime.tv_sec = time_t(j->last.cpu_us / 1000000);
        ru.ru_utime.tv_usec = suseconds_t(j->last.cpu_us % 1000000);
        ru.ru_maxrss = long(j->last.maxrss_kb);
        answer(j, ru, wall);
    }

    void answer(Job* j, const rusage& ru, double wall) {
        if (j->out_r >= 0) pump(j, j->out_r, j->out, j->out_trunc);
        if (j->err_r >= 0) pump(j, j->err_r, j->err, j->err_trunc);
        RunResult res = verdict(j, j->last, ru, wall);
        send(encode_result(res));  // first: the caller waits; the clean-up below does not
        release_run(j);
    }

    // The run is over for this init (answered, or gone to another init): its watches, uid
    // slot and place in the concurrency limit go, and the init, until it is reaped, moves to
    // an id of its own. jobs_ holds a run's id only while that run is unanswered: left there,
    // the next init under the id (a requeued run, or a caller reusing it) would replace this
    // Job while its pidfd is still watched - a dangling Job at its reap, and that reap erasing
    // the new init's entry.
    void release_run(Job* j) {
        for (int* fd : {&j->out_r, &j->err_r, &j->timer, &j->report_r}) drop(*fd);
        drop_warm(j);
        if (j->slot >= 0) slot_used_[size_t(j->slot)] = 0;
        j->slot = -1;
        j->answered = true;
        --active_;
        auto it = jobs_.find(j->req.id);
        if (it == jobs_.end() || it->second.get() != j) return;
        std::unique_ptr<Job> own = std::move(it->second);
        jobs_.erase(it);
        j->req.id = retired_id();
        jobs_[j->req.id] = std::move(own);
    }

    uint64_t retired_id() { return (uint64_t(1) << 63) | retired_++; }

    void pump(Job* j, int& fd, std::string& buf, bool& trunc) {
        switch (drain(fd, buf, size_t(j->req.limits.output_bytes))) {
            case Drained::Pending: return;
            case Drained::Closed: drop(fd); return;
            case Drained::Overflow:
                // Flooding: stop the program now rather than let it block on a full pipe.
                trunc = true;
                drop(fd);
                kill_job(j, Kill::Output);
                return;
        }
    }

    void start_queued() {
        while (!closing_ && !queue_.empty() && active_ < max_) {
            // Both halves of a pair run at once or not at all (one alone would wait on the
            // other until its wall clock): it waits for two places, or an idle pool.
            bool pair = queue_.front().partner != nullptr;
            if (pair && active_ + 2 > max_ && active_ > 0) break;
            RunRequest r = std::move(queue_.front());
            queue_.pop_front();
            if (pair) start_pair(std::move(r));
            else start(std::move(r));
        }
    }

    void fail_now(uint64_t id, const std::string& why) {
        RunResult res;
        res.id = id;
        res.error = why;
        send(encode_result(res));
    }

    static std::string tmpfs_opts(int64_t disk_mb) {
        // Inodes are capped too: empty files cost no blocks but each is a file to copy back.
        return "mode=1777,size=" + std::to_string(disk_mb) + "m,nr_inodes=" +
               std::to_string(std::max<int64_t>(1024, disk_mb * 64));
    }

    // A run's init with everything known before the run: pipes, memory, the plan's first
    // part. Returns nullptr with `why` set when it cannot.
    // `in_fd`/`out_fd` (a wired pair's pipe ends, owned from here on): the program's stdin and
    // stdout instead of a memfd and a captured pipe.
    std::unique_ptr<Job> make_job(const std::string& opts, std::string& why, int in_fd = -1, int out_fd = -1) {
        auto j = std::make_unique<Job>();
        int out[2] = {-1, out_fd}, err[2] = {-1, -1}, rep[2] = {-1, -1}, go[2] = {-1, -1};
        int in = in_fd >= 0 ? in_fd : memfd_create("stdin", MFD_CLOEXEC);
        if (in < 0 || (out_fd < 0 && pipe2(out, O_CLOEXEC)) || pipe2(err, O_CLOEXEC) || pipe2(rep, O_CLOEXEC) ||
            pipe2(go, O_CLOEXEC)) {
            why = std::string("pipes: ") + std::strerror(errno);
            for (int* p : {out, err, rep, go}) { close_fd(p[0]); close_fd(p[1]); }
            close_fd(in);
            return nullptr;
        }
        j->out_r = out[0];
        j->err_r = err[0];
        j->report_r = rep[0];
        j->go_w = go[1];
        // The zygote's own descriptor of the stdin memfd (`in` goes to the init); both share
        // one file offset.
        j->stdin_w = in_fd >= 0 ? -1 : fcntl(in, F_DUPFD_CLOEXEC, 3);
        for (int fd : {j->out_r, j->err_r, j->report_r})
            if (fd >= 0) fcntl(fd, F_SETFL, O_NONBLOCK);
        for (size_t i = 0; i < slot_used_.size(); ++i)
            if (!slot_used_[i]) { j->slot = int(i); break; }
        RunMounts& m = j->mounts;
        m.tmpfs_opts = opts;
        m.uid_map = std::to_string(ns_.inside_uid) + " " + std::to_string(ns_.run_uid) + " 1";
        m.gid_map = std::to_string(ns_.inside_gid) + " " + std::to_string(ns_.run_gid) + " 1";
        uid_t uid = ns_.inside_uid;
        if (ns_.slot_uids) uid = ns_.run_uid + uid_t(std::max(j->slot, 0));
        m.uid = uid;
        m.gid = ns_.inside_gid;
        j->plan = ChildPlan{uid, ns_.inside_gid, in, out[1], err[1], rep[1], alive_[0], go[0], ns_.base_fd,
                            &ns_, &m, &filter_, g_trace ? &j->tlog : nullptr, nullptr, nullptr,
                            nullptr, nullptr, nullptr, nullptr};
        if (j->stdin_w < 0 && in_fd < 0) why = std::string("dup stdin memfd: ") + std::strerror(errno);
        else if (j->slot < 0) why = "no free uid slot";
        else if (!(j->mem = pool_.take()) || !(j->program_mem = pool_.take()))
            why = std::string("init stack: ") + std::strerror(errno);
        if (!why.empty()) {
            close_child_ends(j.get());
            drop_job_fds(j.get());
            return nullptr;
        }
        j->plan.program_stack = j->program_mem->stack_top();
        j->plan.program_tp = j->program_mem->tp();
        // A single run (never half of a pair) may be warm: the template's fork needs the
        // run's stdio, and the init a pipe for that fork's pid.
        if (tpl_fd_ >= 0 && in_fd < 0) {
            int wp[2];
            if (pipe2(wp, O_CLOEXEC) == 0) {
                j->plan.warm_r = wp[0];
                j->warm_w = wp[1];
                j->warm_in = fcntl(in, F_DUPFD_CLOEXEC, 3);
                j->warm_out = fcntl(out[1], F_DUPFD_CLOEXEC, 3);
                j->warm_err = fcntl(err[1], F_DUPFD_CLOEXEC, 3);
                if (j->warm_in < 0 || j->warm_out < 0 || j->warm_err < 0) {
                    close_fd(j->plan.warm_r);
                    drop_warm(j.get());
                }
            }
        }
        return j;
    }

    static void drop_warm(Job* j) {
        for (int* fd : {&j->warm_w, &j->warm_in, &j->warm_out, &j->warm_err}) close_fd(*fd);
    }

    // The descriptors only the init needs (the zygote's copies close after clone).
    static void close_child_ends(Job* j) {
        ChildPlan& p = j->plan;
        for (int* fd : {&p.stdin_fd, &p.out_w, &p.err_w, &p.report_w, &p.go_r, &p.warm_r}) close_fd(*fd);
    }

    // Clones the init; from here on it is reaped like any other. Returns false with `why`.
    bool launch(Job* j, std::string& why) {
        int flags = SIGCHLD | CLONE_PIDFD;
#if defined(__x86_64__)
        // The TLS copy assumes x86_64's layout (TCB at the thread pointer, TLS below it);
        // elsewhere the init gets a copy of the address space as a fork would.
        flags |= CLONE_VM | CLONE_SETTLS;
#endif
        if (ns_.userns) flags |= CLONE_NEWUSER;
        if (ns_.pidns) flags |= CLONE_NEWPID;
        if (ns_.mntns) flags |= CLONE_NEWNS;
        if (ns_.ipcns && !ns_.ipc_shared) flags |= CLONE_NEWIPC;
        if (ns_.utsns) flags |= CLONE_NEWUTS;
        int pidfd = -1;
        trace(j, "zygote: prepare");
        // The init runs on its own stack and TLS in this address space; it only makes
        // syscalls on data that stays put until it is reaped (Job), and never allocates.
        pid_t pid = clone(init_entry, j->mem->stack_top(), flags, &j->plan, &pidfd, j->mem->tp(), nullptr);
        int e = errno;
        // The plan keeps the numbers (the init has its own copies); these are the zygote's.
        int ends[] = {j->plan.stdin_fd, j->plan.out_w, j->plan.err_w, j->plan.report_w, j->plan.go_r, j->plan.warm_r};
        for (int fd : ends) close(fd);
        if (pid < 0) {
            why = std::string("clone: ") + std::strerror(e);
            return false;
        }
        j->pid = pid;
        j->pidfd = pidfd;
        trace(j, "zygote: clone");
        slot_used_[size_t(j->slot)] = 1;
        add(j->pidfd, j, kPidfd, EPOLLIN);
        return true;
    }

    void drop_job_fds(Job* j) {
        for (int* fd : {&j->out_r, &j->err_r, &j->report_r, &j->go_w, &j->stdin_w}) close_fd(*fd);
        drop_warm(j);
    }

    // Keeps spares_target_ inits prepared for the next runs (after the queue had its turn).
    void replenish() {
        while (!closing_ && int(spares_.size()) < spares_target_) {
            std::string why;
            auto j = make_job(spare_opts_, why);
            if (!j) return;  // the next run prepares its own and reports why
            if (!launch(j.get(), why)) {
                drop_job_fds(j.get());
                return;
            }
            j->spare = true;
            spares_.push_back(std::move(j));
        }
    }

    // An init that will never get a run: killed, and reaped like any other.
    void retire(std::unique_ptr<Job> j) {
        syscall(SYS_pidfd_send_signal, j->pidfd, SIGKILL, nullptr, 0);
        drop_job_fds(j.get());
        if (j->slot >= 0) slot_used_[size_t(j->slot)] = 0;
        j->slot = -1;
        j->answered = true;
        j->spare = false;
        j->req.id = retired_id();
        jobs_[j->req.id] = std::move(j);
    }

    // Is the program's process of a prepared init still there to read its go pipe? (A pipe
    // with no reader left polls as POLLERR on its write end.)
    static bool go_reader_alive(Job* j) {
        pollfd p{j->go_w, POLLOUT, 0};
        return poll(&p, 1, 0) == 1 && !(p.revents & (POLLERR | POLLHUP));
    }

    // The run's processes died (killed from outside: nobody here kills a run it has not
    // started) before the program's execve, and without a set-up failure: nothing of the run
    // happened outside its own tmpfs, so it may go to another init instead of failing.
    bool never_launched(Job* j) const {
        bool failed = j->last.kind == kSetupFailed || j->last.kind == kExecFailed;
        return j->killed == Kill::None && !failed && !j->mounts.launched && j->req.handovers < 3 && !closing_;
    }

    void requeue(Job* j) {
        RunRequest r = j->req;  // the job keeps its strings (its init may still read them)
        r.handovers += 1;
        release_run(j);
        queue_.push_front(std::move(r));
    }

    void retire_spares() {
        while (!spares_.empty()) {
            retire(std::move(spares_.front()));
            spares_.pop_front();
        }
    }

    // Why a run cannot start ("" when it can), with its workdir's name.
    std::string admit(const RunRequest& r, std::string& cwd_name) {
        // Only an unanswered run holds its id in jobs_ (release_run): a second one under it is
        // a caller's error.
        if (jobs_.count(r.id)) return "a run with this id is already running";
        size_t shown = ns_.shown.size();
        for (auto& p : r.ro_paths) {
            std::string why = ensure_visible(ns_, p);
            if (!why.empty()) return "read-only view: " + why;
        }
        // A spare's mount namespace is a copy of the template from before the new bind.
        if (ns_.shown.size() != shown) retire_spares();
        cwd_name = r.cwd.substr(r.cwd.rfind('/') + 1);
        if (ns_.mntns && (r.cwd.compare(0, ns_.base.size() + 1, ns_.base + "/") != 0 || cwd_name.empty() ||
                          cwd_name.find('/') != std::string::npos))
            return "cwd " + r.cwd + " is not a workdir of this sandbox";
        return "";
    }

    // A wired pair: two inits made for it (never spares: their stdio is fixed when prepared),
    // each with every protection of a run of its own - own namespaces, uid slot, limits, wall
    // clock, seccomp - and nothing shared but two pipes: a's stdout is b's stdin and b's
    // stdout is a's stdin. Neither stdout is captured; stderr is, as for any run.
    void start_pair(RunRequest a) {
        RunRequest b = std::move(*a.partner);
        a.partner.reset();
        uint64_t ia = a.id, ib = b.id;
        auto fail_both = [&](const std::string& why) {
            fail_now(ia, why);
            fail_now(ib, why);
        };
        std::string name_a, name_b;
        std::string why = admit(a, name_a);
        if (why.empty()) why = admit(b, name_b);
        if (why.empty() && ia == ib) why = "the two runs of a pair need two ids";
        if (!why.empty()) return fail_both(why);
        int ab[2] = {-1, -1}, ba[2] = {-1, -1};
        if (pipe2(ab, O_CLOEXEC) != 0 || pipe2(ba, O_CLOEXEC) != 0) {
            why = std::string("pair pipes: ") + std::strerror(errno);
            for (int* p : {ab, ba}) { close_fd(p[0]); close_fd(p[1]); }
            return fail_both(why);
        }
        auto ja = make_job(tmpfs_opts(a.limits.disk_mb), why, ba[0], ab[1]);
        if (!ja) {
            close_fd(ab[0]);
            close_fd(ba[1]);
            return fail_both(why);
        }
        auto jb = make_job(tmpfs_opts(b.limits.disk_mb), why, ab[0], ba[1]);
        if (!jb) {
            close_child_ends(ja.get());
            drop_job_fds(ja.get());
            return fail_both(why);
        }
        // Half a pair must never go to another init alone.
        a.handovers = b.handovers = 3;
        ja->req = std::move(a);
        jb->req = std::move(b);
        trace(ja.get(), "zygote: pair arrives");
        hand_over(std::move(ja), std::move(name_a));
        hand_over(std::move(jb), std::move(name_b));
    }

    void start(RunRequest r) {
        uint64_t id = r.id;
        std::string cwd_name;
        std::string refused = admit(r, cwd_name);
        if (!refused.empty()) return fail_now(id, refused);

        // A spare whose tmpfs has this run's size, or one made now. Spares follow the size
        // the runs ask for.
        std::string opts = tmpfs_opts(r.limits.disk_mb);
        if (opts != spare_opts_) {
            retire_spares();
            spare_opts_ = opts;
        }
        std::unique_ptr<Job> j;
        // A spare whose processes died while it waited (killed from outside) has nobody on
        // its go pipe: it is retired and the next one tried.
        while (!spares_.empty() && !j) {
            j = std::move(spares_.front());
            spares_.pop_front();
            j->spare = false;
            if (!go_reader_alive(j.get())) retire(std::move(j));
        }
        if (!j) {
            std::string why;
            j = make_job(opts, why);
            if (!j) return fail_now(id, why);
        }
        trace(j.get(), "zygote: run arrives");
        j->req = std::move(r);
        const RunRequest& q = j->req;
        size_t off = 0;
        while (off < q.stdin_data.size()) {
            ssize_t n = write(j->stdin_w, q.stdin_data.data() + off, q.stdin_data.size() - off);
            if (n <= 0) break;
            off += size_t(n);
        }
        if (off < q.stdin_data.size()) {
            if (j->pid > 0) retire(std::move(j));
            else { close_child_ends(j.get()); drop_job_fds(j.get()); }
            return fail_now(id, "writing stdin to memfd failed");
        }
        lseek(j->stdin_w, 0, SEEK_SET);  // the init's descriptor shares this offset
        close_fd(j->stdin_w);
        hand_over(std::move(j), std::move(cwd_name));
    }

    // The run (already in j->req) goes to its init: launched now unless it is a spare, its
    // wall clock started, the go byte written.
    void hand_over(std::unique_ptr<Job> j, std::string cwd_name) {
        const RunRequest& q = j->req;
        uint64_t id = q.id;
        for (auto& a : q.argv) j->argv.push_back(const_cast<char*>(a.c_str()));
        j->argv.push_back(nullptr);
        for (auto& e : q.envp) j->envp.push_back(const_cast<char*>(e.c_str()));
        j->envp.push_back(nullptr);
        j->mounts.cwd = q.cwd;
        j->mounts.cwd_name = std::move(cwd_name);
        clock_gettime(CLOCK_REALTIME, &j->mounts.started);
        j->plan.exe = q.exe.c_str();
        j->plan.argv = j->argv.data();
        j->plan.envp = j->envp.data();
        j->plan.limits = &q.limits;
        // Warm only with a template up (it may have died since this init was made); the init
        // reads the flag after the go byte.
        j->plan.warm = q.warm && tpl_fd_ >= 0 && j->warm_w >= 0;
        if (!j->plan.warm) drop_warm(j.get());
        if (j->pid < 0) {
            // Prepared now, with the run already in its plan (where no spares are kept, the
            // init may be a copy of this memory rather than a sharer of it).
            std::string why;
            if (!launch(j.get(), why)) {
                drop_job_fds(j.get());
                return fail_now(id, why);
            }
        }

        j->timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        itimerspec its{};
        double w = q.limits.wall_s > 0 ? q.limits.wall_s : 1e-3;
        its.it_value.tv_sec = time_t(w);
        its.it_value.tv_nsec = long((w - double(time_t(w))) * 1e9);
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
        timerfd_settime(j->timer, 0, &its, nullptr);
        j->start = now();
        Job* jp = j.get();
        jobs_[id] = std::move(j);
        if (jp->out_r >= 0) add(jp->out_r, jp, kOut, EPOLLIN);
        add(jp->err_r, jp, kErr, EPOLLIN);
        add(jp->timer, jp, kTimer, EPOLLIN);
        add(jp->report_r, jp, kReport, EPOLLIN);
        ++active_;
        // The run is in the init's memory (shared): the byte hands it over. An init that died
        // while it waited is reaped and reported like any failed set-up.
        char go = 1;
        ssize_t n;
        trace(jp, "zygote: run handed over");
        do n = write(jp->go_w, &go, 1); while (n < 0 && errno == EINTR);
        close_fd(jp->go_w);
    }

    // The warm Python template: `t` is its command and its stdin's data (the judge's bytecode
    // and its sources). It is started by fork and execve, so none of this process's memory
    // (queued runs' stdin: tokens and tests) reaches it; its descriptors are its stdin (a
    // memfd: the seccomp filter, then `t`'s data), stderr and a socket to this process (3).
    // It serves serve_warm() and nothing else. Without a pid and a mount namespace per run
    // the template's fork could not join a run of its own: warm runs then simply run cold.
    void start_template(const RunRequest& t) {
        if (tpl_fd_ >= 0 || closing_ || !ns_.pidns || !ns_.mntns) return;
        for (auto& p : t.ro_paths) {
            size_t shown = ns_.shown.size();
            if (!ensure_visible(ns_, p).empty()) return;
            if (ns_.shown.size() != shown) retire_spares();
        }
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return;
        int mem = memfd_create("template", MFD_CLOEXEC);
        std::string data;
        uint64_t flen = filter_.size() * sizeof(sock_filter);
        data.append(reinterpret_cast<const char*>(&flen), sizeof flen);
        data.append(reinterpret_cast<const char*>(filter_.data()), size_t(flen));
        data += t.stdin_data;
        size_t off = 0;
        while (mem >= 0 && off < data.size()) {
            ssize_t n = write(mem, data.data() + off, data.size() - off);
            if (n <= 0) break;
            off += size_t(n);
        }
        if (mem < 0 || off < data.size()) {
            close_fd(mem);
            close(sv[0]);
            close(sv[1]);
            return;
        }
        lseek(mem, 0, SEEK_SET);
        std::vector<char*> argv, envp;
        for (auto& a : t.argv) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        for (auto& e : t.envp) envp.push_back(const_cast<char*>(e.c_str()));
        envp.push_back(nullptr);
        pid_t pid = fork();
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() == 1) _exit(125);
            // dup2 onto itself would keep close-on-exec: move both out of the way first.
            int m = fcntl(mem, F_DUPFD, 10), s = fcntl(sv[1], F_DUPFD, 10);
            if (m < 0 || s < 0 || dup2(m, 0) < 0 || dup2(2, 1) < 0 || dup2(s, 3) < 0) _exit(126);
            syscall(SYS_close_range, 4u, ~0u, 0u);
            signal(SIGPIPE, SIG_DFL);
            execve(t.exe.c_str(), argv.data(), envp.data());
            _exit(127);
        }
        close(mem);
        close(sv[1]);
        if (pid < 0) {
            close(sv[0]);
            return;
        }
        tpl_pid_ = pid;
        tpl_fd_ = sv[0];
        fcntl(tpl_fd_, F_SETFL, O_NONBLOCK);
        tpl_pidfd_ = int(syscall(SYS_pidfd_open, pid, 0));
        if (tpl_pidfd_ >= 0) {
            fcntl(tpl_pidfd_, F_SETFD, FD_CLOEXEC);
            add(tpl_pidfd_, nullptr, kTemplate, EPOLLIN);
        }
        // Spares made before now have no warm pipe.
        retire_spares();
    }

    void template_gone() {
        int st;
        waitpid(tpl_pid_, &st, WNOHANG);
        drop(tpl_pidfd_);
        close_fd(tpl_fd_);
        tpl_pid_ = -1;
        if (!closing_) dprintf(2, "halo-forge sandbox zygote: the warm python template exited; python runs start cold\n");
    }

    // The init reported kWarmReady (its run's workdir is made): the template forks a process
    // that joins the init's namespaces (by its pidfd), takes the run's stdio, cwd, rlimits,
    // ids and seccomp filter, writes its pid to the init and runs the run's Python. What the
    // template learns is this message: no stdin, token or test of the run (those stay in the
    // memfd it passes on unread).
    void serve_warm(Job* j) {
        if (j->warm_w < 0) return;
        Writer w;
        uint32_t flags = 0;
        if (ns_.userns) flags |= CLONE_NEWUSER;
        if (ns_.pidns) flags |= CLONE_NEWPID;
        if (ns_.mntns) flags |= CLONE_NEWNS;
        if (ns_.ipcns && !ns_.ipc_shared) flags |= CLONE_NEWIPC;
        if (ns_.utsns) flags |= CLONE_NEWUTS;
        w.pod<uint32_t>(flags);
        w.pod<uint32_t>(j->plan.uid);
        w.pod<uint32_t>(j->plan.gid);
        w.pod<uint8_t>(ns_.set_ids);
        w.pod<uint32_t>(ns_.slot_uids ? 002 : 022);
        w.str(j->req.cwd);
        w.strs(j->req.argv);
        w.strs(j->req.envp);
        RlimitPlan rl = rlimit_plan(j->req.limits, ns_.userns || ns_.root);
        w.pod<uint32_t>(uint32_t(rl.n));
        for (int i = 0; i < rl.n; ++i) {
            w.pod<int32_t>(rl.set[i].resource);
            w.pod<uint64_t>(rl.set[i].soft);
            w.pod<uint64_t>(rl.set[i].hard);
        }
        std::string body = w.take();
        int fds[5] = {j->pidfd, j->warm_in, j->warm_out, j->warm_err, j->warm_w};
        char ctl[CMSG_SPACE(sizeof fds)] = {};
        iovec iov{body.data(), body.size()};
        msghdr mh{};
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = ctl;
        mh.msg_controllen = sizeof ctl;
        cmsghdr* c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof fds);
        std::memcpy(CMSG_DATA(c), fds, sizeof fds);
        trace(j, "zygote: warm request");
        ssize_t n;
        do n = sendmsg(tpl_fd_, &mh, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
        // Sent or not, these are the template's now: unsent, the init reads end of file on
        // its pid pipe and fails the run as the sandbox's failure.
        drop_warm(j);
    }

    void reap(Job* j) {
        int st = 0;
        rusage ru{};
        pid_t r;
        do r = wait4(j->pid, &st, __WALL | WNOHANG, &ru); while (r < 0 && errno == EINTR);
        if (r == 0) return;
        if (j->spare) {
            // A spare died before it had a run (killed from outside, or its set-up failed):
            // forget it; replenish() prepares another.
            drop(j->pidfd);
            drop_job_fds(j);
            if (j->slot >= 0) slot_used_[size_t(j->slot)] = 0;
            recycle(j);
            for (auto it = spares_.begin(); it != spares_.end(); ++it)
                if (it->get() == j) { spares_.erase(it); break; }
            return;
        }
        if (!j->answered) {
            // Killed (wall clock, output, cancel) or failed before kDone. The init is gone; with
            // a pid namespace so is every writer of the pipes.
            double wall = now() - j->start;
            trace(j, "zygote: init exit, reap");
            read_reports(j);
            if (never_launched(j)) {
                requeue(j);
            } else {
                answer(j, ru, wall);
            }
        } else {
            trace(j, "zygote: init exit (after answer)");
        }
        account_trace(j);
        drop(j->pidfd);
        recycle(j);
        jobs_.erase(j->req.id);
    }

    // After the init's wait4: its memory may serve a later init (see MemoryPool).
    void recycle(Job* j) {
        if (!ns_.pidns) return;
        size_t keep = size_t(slots()) * 2;
        pool_.give(std::move(j->mem), keep);
        pool_.give(std::move(j->program_mem), keep);
    }

    RunResult verdict(Job* j, const ChildReport& last, const rusage& ru, double wall) {
        RunResult res;
        res.id = j->req.id;
        res.wall_s = wall;
        res.cpu_s = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                    double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
        res.peak_memory_kb = ru.ru_maxrss;
        res.out = std::move(j->out);
        res.err = std::move(j->err);
        res.out_truncated = j->out_trunc;
        res.err_truncated = j->err_trunc;
        judge(res, last, j->killed, j->req.limits, j->req.exe);
        return res;
    }
};

}  // namespace

void zygote_main(int fd, const char* base_dir, int max_concurrency, int spares) {
    Zygote z(fd, base_dir, max_concurrency > 0 ? max_concurrency : 1, spares > 0 ? spares : 0);
    z.run();
}

}  // namespace hf
