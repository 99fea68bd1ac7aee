#include "memory_pool.hpp"

#include <cstdint>
#include <cstring>
#include <link.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

// glibc's size of its thread descriptor (the TCB at the thread pointer), for debuggers.
extern "C" const uint32_t _thread_db_sizeof_pthread;

namespace hf {

namespace {

// The init copies workdirs (4 KiB of buffer per directory level, depth <= 64).
constexpr size_t kStack = size_t(1) << 20;

// Bytes of the static TLS block below the thread pointer (x86_64: TLS sits below the TCB).
size_t tls_below() {
    static size_t below = [] {
        auto* ph = reinterpret_cast<const ElfW(Phdr)*>(getauxval(AT_PHDR));
        size_t n = getauxval(AT_PHNUM);
        for (size_t i = 0; ph && i < n; ++i)
            if (ph[i].p_type == PT_TLS) {
                size_t a = ph[i].p_align ? ph[i].p_align : 1;
                return (ph[i].p_memsz + a - 1) / a * a;
            }
        return size_t(0);
    }();
    return below;
}

}  // namespace

InitMemory::~InitMemory() {
    if (base_) munmap(base_, len_);
}

bool InitMemory::map() {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    size_t tls_len = (tls_below() + _thread_db_sizeof_pthread + 63) & ~size_t(63);
    len_ = page + kStack + ((tls_len + page - 1) & ~(page - 1));
    void* m = mmap(nullptr, len_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) return false;
    base_ = static_cast<char*>(m);
    if (mprotect(base_, page, PROT_NONE) != 0) return false;
    stack_top_ = base_ + page + kStack;  // page aligned, below the TLS copy
    refresh_tls();
    return true;
}

void InitMemory::refresh_tls() {
#if defined(__x86_64__)
    char* tls = stack_top_;
    char* tp = static_cast<char*>(__builtin_thread_pointer());
    std::memcpy(tls, tp - tls_below(), tls_below() + _thread_db_sizeof_pthread);
    tp_ = tls + tls_below();
    // tcbhead_t: tcb (the thread pointer itself) at 0, self at 16.
    reinterpret_cast<void**>(tp_)[0] = tp_;
    reinterpret_cast<void**>(tp_)[2] = tp_;
#endif
}

std::unique_ptr<InitMemory> MemoryPool::take() {
    if (free_.empty()) {
        auto m = std::make_unique<InitMemory>();
        if (!m->map()) return nullptr;
        return m;
    }
    auto m = std::move(free_.back());
    free_.pop_back();
    m->refresh_tls();
    return m;
}

void MemoryPool::give(std::unique_ptr<InitMemory> m, size_t keep) {
    if (m && free_.size() < keep) free_.push_back(std::move(m));
}

}  // namespace hf
