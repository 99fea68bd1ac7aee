// Reading a non-blocking descriptor until it has nothing more for now: the caller's socket
// (client.cpp), the zygote's control socket and each run's output pipes (zygote.cpp).
#pragma once

#include <cstddef>
#include <string>

namespace hf {

enum class Drained {
    Pending,   // nothing more for now (the read would block)
    Closed,    // end of file, or an error: nothing more will come
    Overflow,  // more than `cap` bytes in `buf`: it holds the first `cap`, the rest was read and dropped
};

// Appends what `fd` (O_NONBLOCK) has to `buf`, up to `cap` bytes in all. Retries EINTR.
Drained drain(int fd, std::string& buf, size_t cap = std::string::npos);

}  // namespace hf
