// The zygote as an executable of its own: a small static process forks in microseconds,
// where a fork of the Python interpreter that used to host it (about 11 MB mapped, hundreds
// of mappings) cost a page-table copy and copy-on-write faults on every run.
//
//   halo-forge-zygote FD BASE_DIR MAX_CONCURRENCY SPARES   (started by Client, never by hand)
#include "zygote.hpp"

#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
    if (argc != 5) {
        std::fprintf(stderr, "usage: %s FD BASE_DIR MAX_CONCURRENCY SPARES (started by halo_forge.sandbox)\n", argv[0]);
        return 2;
    }
    hf::zygote_main(std::atoi(argv[1]), argv[2], std::atoi(argv[3]), std::atoi(argv[4]));
}
