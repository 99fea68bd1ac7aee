#include "seccomp.hpp"

#include <cerrno>
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

constexpr uint32_t kNr = offsetof(seccomp_data, nr);
constexpr uint32_t kArchOff = offsetof(seccomp_data, arch);
constexpr uint32_t kArg0 = offsetof(seccomp_data, args[0]);  // low 32 bits on little endian

struct Prog {
    std::vector<sock_filter> f;
    void stmt(uint16_t code, uint32_t k) { f.push_back(BPF_STMT(code, k)); }
    void jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) { f.push_back(BPF_JUMP(code, k, jt, jf)); }
    // if nr == n: return `ret`
    void deny(long n, uint32_t ret) {
        jump(BPF_JMP | BPF_JEQ | BPF_K, uint32_t(n), 0, 1);
        stmt(BPF_RET | BPF_K, ret);
    }
};

constexpr uint32_t errno_ret(int e) { return SECCOMP_RET_ERRNO | (uint32_t(e) & SECCOMP_RET_DATA); }

}  // namespace

std::vector<sock_filter> build_seccomp_filter(std::string& why) {
    if (kArch == 0) {
        why = "seccomp filter: unsupported CPU architecture (x86_64 and aarch64 only)";
        return {};
    }
    Prog p;
    // Foreign ABIs (i386 int 0x80 on x86_64) have other syscall numbers: kill them outright.
    p.stmt(BPF_LD | BPF_W | BPF_ABS, kArchOff);
    p.jump(BPF_JMP | BPF_JEQ | BPF_K, kArch, 1, 0);
    p.stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
    p.stmt(BPF_LD | BPF_W | BPF_ABS, kNr);
#if defined(__x86_64__)
    // x32 calls set bit 30 on x86_64 numbers.
    p.jump(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1);
    p.stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
#endif
    // socket()/socketpair(): AF_UNIX only (no network, no netlink, no packet sockets).
    for (long nr : {long(SYS_socket), long(SYS_socketpair)}) {
        p.jump(BPF_JMP | BPF_JEQ | BPF_K, uint32_t(nr), 0, 4);
        p.stmt(BPF_LD | BPF_W | BPF_ABS, kArg0);
        p.jump(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 0, 1);
        p.stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        p.stmt(BPF_RET | BPF_K, errno_ret(EACCES));
    }
    // clone(): no new namespaces (the flags are arg 0 on x86_64 and aarch64).
    p.jump(BPF_JMP | BPF_JEQ | BPF_K, uint32_t(SYS_clone), 0, 4);
    p.stmt(BPF_LD | BPF_W | BPF_ABS, kArg0);
    p.jump(BPF_JMP | BPF_JSET | BPF_K,
           CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |
               CLONE_NEWCGROUP,
           0, 1);
    p.stmt(BPF_RET | BPF_K, errno_ret(EPERM));
    p.stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    // clone3 passes its flags in memory BPF cannot read: ENOSYS makes glibc fall back to clone.
    p.deny(SYS_clone3, errno_ret(ENOSYS));
    // io_uring bypasses the syscall filter entirely; runtimes fall back on ENOSYS.
    for (long nr : {long(SYS_io_uring_setup), long(SYS_io_uring_enter), long(SYS_io_uring_register)})
        p.deny(nr, errno_ret(ENOSYS));
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
#if defined(__x86_64__)
             long(SYS_iopl), long(SYS_ioperm), long(SYS_uselib), long(SYS_modify_ldt),
#endif
         })
        p.deny(nr, errno_ret(EPERM));
    p.stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    return std::move(p.f);
}

bool install_seccomp(const std::vector<sock_filter>& prog) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
    if (prog.empty()) return true;
    sock_fprog fp{static_cast<unsigned short>(prog.size()), const_cast<sock_filter*>(prog.data())};
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fp, 0, 0) == 0;
}

}  // namespace hf
