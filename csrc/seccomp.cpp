#include "seccomp.hpp"

#include <algorithm>
#include <cerrno>
#include <string>
#include <cstddef>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>

namespace hf {

namespace {

#if defined(__x86_64__)
constexpr uint32_t kArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kArch = AUDIT_ARCH_AARCH64;
#else
constexpr uint32_t kArch = 0;
#endif

// What the filter does with one syscall number (anything not listed is allowed).
enum class Rule { Eperm, Enosys, Eacces, PairOnly, NoNewNs };

struct Entry {
    uint32_t nr;
    Rule rule;
};

constexpr uint32_t errno_ret(int e) { return SECCOMP_RET_ERRNO | (uint32_t(e) & SECCOMP_RET_DATA); }

// The syscall numbers are matched by a binary search (JGE splits, a few JEQs at the leaves)
// rather than one JEQ after another. The kernel evaluates a new filter for every syscall
// number when it is installed (to cache the ones that are always allowed) and the program's
// own syscalls walk it too: ~8 comparisons per number instead of ~100 made the install,
// which happens once per run, several times cheaper.
//
// Layout: [arch checks][search tree, leaves ending in RET ALLOW][RET EPERM][RET ENOSYS]
// [RET EACCES][socketpair check][clone flags check]. Every jump goes forward: to the tree's next node or to
// the tail block of a listed number's rule.
class Builder {
public:
    explicit Builder(std::vector<Entry> entries) : e_(std::move(entries)) {}

    std::vector<sock_filter> build(uint32_t arch) {
        stmt(BPF_LD | BPF_W | BPF_ABS, kArchOff);
        jump(BPF_JMP | BPF_JEQ | BPF_K, arch, 1, 0);
        stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);  // a foreign ABI (i386 int 0x80)
        stmt(BPF_LD | BPF_W | BPF_ABS, kNr);
#if defined(__x86_64__)
        // x32 calls set bit 30 on x86_64 numbers.
        jump(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1);
        stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
#endif
        tree(0, e_.size());
        size_t tail = f_.size();
        stmt(BPF_RET | BPF_K, errno_ret(EPERM));
        stmt(BPF_RET | BPF_K, errno_ret(ENOSYS));
        stmt(BPF_RET | BPF_K, errno_ret(EACCES));
        // socketpair(): AF_UNIX stream or seqpacket only. Those come connected to each other
        // and cannot be aimed anywhere else (connect gives EISCONN, a destination address on
        // send is refused or ignored); a datagram pair can: connect() or sendto() re-aims it
        // at any name, and sendmsg's name sits in memory this filter cannot read.
        size_t pair_only = f_.size();
        stmt(BPF_LD | BPF_W | BPF_ABS, kArg0);
        jump(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 0, 5);
        stmt(BPF_LD | BPF_W | BPF_ABS, kArg1);
        stmt(BPF_ALU | BPF_AND | BPF_K, 0xf);  // the type without SOCK_CLOEXEC / SOCK_NONBLOCK
        jump(BPF_JMP | BPF_JEQ | BPF_K, SOCK_STREAM, 1, 0);
        jump(BPF_JMP | BPF_JEQ | BPF_K, SOCK_SEQPACKET, 0, 1);
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        stmt(BPF_RET | BPF_K, errno_ret(EACCES));
        // clone(): no new namespaces (the flags are arg 0 on x86_64 and aarch64).
        size_t no_new_ns = f_.size();
        stmt(BPF_LD | BPF_W | BPF_ABS, kArg0);
        jump(BPF_JMP | BPF_JSET | BPF_K,
             CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |
                 CLONE_NEWCGROUP,
             0, 1);
        stmt(BPF_RET | BPF_K, errno_ret(EPERM));
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        size_t target[5] = {tail, tail + 1, tail + 2, pair_only, no_new_ns};  // by Rule
        for (auto& [at, rule] : fixups_) {
            // Conditional jumps have 8 bits: the tree is ~150 instructions, well within.
            size_t dest = target[int(rule)];
            if (dest <= at || dest - at - 1 > 255) return {};
            f_[at].jt = uint8_t(dest - at - 1);
        }
        if (too_far_) return {};
        return std::move(f_);
    }

private:
    static constexpr uint32_t kNr = offsetof(seccomp_data, nr);
    static constexpr uint32_t kArchOff = offsetof(seccomp_data, arch);
    // Low 32 bits (little endian): all an int argument holds for the kernel.
    static constexpr uint32_t kArg0 = offsetof(seccomp_data, args[0]);
    static constexpr uint32_t kArg1 = offsetof(seccomp_data, args[1]);
    std::vector<Entry> e_;
    std::vector<sock_filter> f_;
    std::vector<std::pair<size_t, Rule>> fixups_;  // JEQ at index -> its rule's tail block
    bool too_far_ = false;

    void stmt(uint16_t code, uint32_t k) { f_.push_back(BPF_STMT(code, k)); }
    void jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) { f_.push_back(BPF_JUMP(code, k, jt, jf)); }

    // Entries [lo, hi) sorted by number; the accumulator holds the syscall number.
    void tree(size_t lo, size_t hi) {
        if (hi - lo <= 3) {
            for (size_t i = lo; i < hi; ++i) {
                // if nr == e.nr: go to the rule's block, else fall through to the next test
                fixups_.emplace_back(f_.size(), e_[i].rule);
                jump(BPF_JMP | BPF_JEQ | BPF_K, e_[i].nr, 0, 0);
            }
            stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
            return;
        }
        size_t mid = (lo + hi) / 2;
        size_t at = f_.size();
        jump(BPF_JMP | BPF_JGE | BPF_K, e_[mid].nr, 0, 0);  // jt: right half, patched below
        tree(lo, mid);
        size_t right = f_.size();
        if (right - at - 1 > 255) too_far_ = true;
        f_[at].jt = uint8_t(right - at - 1);
        tree(mid, hi);
    }
};

}  // namespace

std::vector<sock_filter> build_seccomp_filter(std::string& why) {
    if (kArch == 0) {
        why = "seccomp filter: unsupported CPU architecture (x86_64 and aarch64 only)";
        return {};
    }
    std::vector<Entry> entries = {
        // No socket() at all: an AF_UNIX one could connect or send to a socket the host
        // listens on in a folder the run sees (read-only mounts do not stop that) or to
        // another run's abstract name (the runs share one network namespace). Whatever the
        // path or name, the socket has to come from socket(); socketpair() keeps pipes-like
        // sockets for the run's own processes.
        {uint32_t(SYS_socket), Rule::Eacces}, {uint32_t(SYS_socketpair), Rule::PairOnly},
        {uint32_t(SYS_clone), Rule::NoNewNs},
        // clone3 passes its flags in memory BPF cannot read: ENOSYS makes glibc fall back to clone.
        {uint32_t(SYS_clone3), Rule::Enosys},
        // io_uring bypasses the syscall filter entirely; runtimes fall back on ENOSYS.
        {uint32_t(SYS_io_uring_setup), Rule::Enosys}, {uint32_t(SYS_io_uring_enter), Rule::Enosys},
        {uint32_t(SYS_io_uring_register), Rule::Enosys},
    };
    for (long nr : {
             long(SYS_ptrace), long(SYS_process_vm_readv), long(SYS_process_vm_writev),
             long(SYS_mount), long(SYS_umount2), long(SYS_pivot_root), long(SYS_chroot),
             long(SYS_unshare), long(SYS_setns), long(SYS_open_tree), long(SYS_move_mount),
             long(SYS_fsopen), long(SYS_fsconfig), long(SYS_fsmount), long(SYS_fspick),
             long(SYS_mount_setattr), long(SYS_keyctl), long(SYS_add_key), long(SYS_request_key),
             long(SYS_bpf), long(SYS_perf_event_open), long(SYS_userfaultfd),
             long(SYS_kexec_load), long(SYS_kexec_file_load), long(SYS_init_module),
             long(SYS_finit_module), long(SYS_delete_module), long(SYS_reboot), long(SYS_swapon),
             long(SYS_swapoff), long(SYS_open_by_handle_at), long(SYS_name_to_handle_at),
             long(SYS_fanotify_init), long(SYS_acct), long(SYS_quotactl), long(SYS_syslog),
             long(SYS_lookup_dcookie),
             // No IPC object can be made: what keeps runs apart in a shared IPC namespace.
             long(SYS_shmget), long(SYS_msgget), long(SYS_semget), long(SYS_mq_open),
#if defined(__x86_64__)
             long(SYS_iopl), long(SYS_ioperm), long(SYS_uselib), long(SYS_modify_ldt),
#endif
         })
        entries.push_back({uint32_t(nr), Rule::Eperm});
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.nr < b.nr; });
    for (size_t i = 1; i < entries.size(); ++i)
        if (entries[i].nr == entries[i - 1].nr) {
            why = "seccomp filter: syscall " + std::to_string(entries[i].nr) + " listed twice";
            return {};
        }
    std::vector<sock_filter> prog = Builder(std::move(entries)).build(kArch);
    if (prog.empty()) why = "seccomp filter: a jump does not fit classic BPF";
    return prog;
}

bool install_seccomp(const std::vector<sock_filter>& prog) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
    if (prog.empty()) return true;
    sock_fprog fp{static_cast<unsigned short>(prog.size()), const_cast<sock_filter*>(prog.data())};
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fp, 0, 0) == 0;
}

}  // namespace hf
