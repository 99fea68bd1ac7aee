// Stacks and thread-local blocks for the processes the zygote clones into its own address
// space, and the pool that keeps them for later runs.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace hf {

// Memory of one run's init, or of its program's process before execve: each shares the
// zygote's address space (clone(CLONE_VM): no copy of the page tables, no copy-on-write faults
// in either process), so it needs a stack and a thread-local block of its own. Unmapped, or
// handed to a later init, only once nothing runs on it any more (see MemoryPool).
class InitMemory {
public:
    InitMemory() = default;
    InitMemory(const InitMemory&) = delete;
    InitMemory& operator=(const InitMemory&) = delete;
    ~InitMemory();

    // Maps a guard page, the stack, and room for a copy of this thread's static TLS block +
    // TCB (so errno, the stack-protector canary and glibc's thread self pointer are the init's
    // own); then fills the copy.
    bool map();
    // The TLS copy taken afresh, for a new user of this memory.
    void refresh_tls();
    void* stack_top() const { return stack_top_; }
    void* tp() const { return tp_; }

private:
    char* base_ = nullptr;
    size_t len_ = 0;
    char* stack_top_ = nullptr;
    char* tp_ = nullptr;
};

// Inits' memory kept for later inits. Mapping and unmapping it per run costs page faults on
// the fresh stack and, at every munmap of memory this address space shares with running
// processes, a TLB shoot-down across the CPUs (expensive under a hypervisor). Memory comes
// back only where the kernel guarantees nobody still runs on it: with a pid namespace, an
// init's exit completes (and wait4 returns) only after every process of its namespace,
// the program's process included, has exited.
class MemoryPool {
public:
    // Kept memory with a fresh TLS copy, or newly mapped; nullptr (errno set) when mmap fails.
    std::unique_ptr<InitMemory> take();
    // Keeps `m` for a later take() while fewer than `keep` are kept; unmaps it otherwise.
    void give(std::unique_ptr<InitMemory> m, size_t keep);

private:
    std::vector<std::unique_ptr<InitMemory>> free_;
};

}  // namespace hf
