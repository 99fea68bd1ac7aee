#include "drain.hpp"

#include <algorithm>
#include <cerrno>
#include <unistd.h>

namespace hf {

Drained drain(int fd, std::string& buf, size_t cap) {
    char tmp[65536];
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof tmp);
        if (n > 0) {
            size_t room = cap > buf.size() ? cap - buf.size() : 0;
            buf.append(tmp, std::min(room, size_t(n)));
            // Stop at once: a flooding writer would otherwise keep this loop busy.
            if (size_t(n) > room) return Drained::Overflow;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Drained::Pending;
        return Drained::Closed;
    }
}

}  // namespace hf
