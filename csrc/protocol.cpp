#include "protocol.hpp"

namespace hf {

static void put_limits(Writer& w, const Limits& l) {
    w.pod(l.cpu_s); w.pod(l.wall_s); w.pod(l.memory_mb); w.pod(l.output_bytes);
    w.pod(l.file_size_mb); w.pod(l.processes); w.pod(l.open_files); w.pod(l.stack_mb); w.pod(l.disk_mb);
}

static void get_limits(Reader& r, Limits& l) {
    l.cpu_s = r.pod<double>(); l.wall_s = r.pod<double>();
    l.memory_mb = r.pod<int64_t>(); l.output_bytes = r.pod<int64_t>();
    l.file_size_mb = r.pod<int64_t>(); l.processes = r.pod<int64_t>();
    l.open_files = r.pod<int64_t>(); l.stack_mb = r.pod<int64_t>();
    l.disk_mb = r.pod<int64_t>();
}

static std::string encode_as(Msg m, const RunRequest& r) {
    Writer w;
    w.pod(m); w.pod(r.id);
    w.str(r.exe); w.strs(r.argv); w.strs(r.envp); w.str(r.cwd); w.str(r.stdin_data);
    w.strs(r.ro_paths); put_limits(w, r.limits); w.pod(r.peer);
    w.pod<uint8_t>(r.warm);
    return w.take();
}

std::string encode_run(const RunRequest& r) { return encode_as(Msg::Run, r); }
std::string encode_template(const RunRequest& r) { return encode_as(Msg::Template, r); }

bool decode_run(Reader& rd, RunRequest& r) {
    r.exe = rd.str(); r.argv = rd.strs(); r.envp = rd.strs(); r.cwd = rd.str();
    r.stdin_data = rd.str(); r.ro_paths = rd.strs(); get_limits(rd, r.limits);
    r.peer = rd.pod<uint64_t>();
    r.warm = rd.pod<uint8_t>() != 0;
    return rd.ok();
}

std::string encode_result(const RunResult& r) {
    Writer w;
    w.pod(Msg::Result); w.pod(r.id);
    w.pod(r.status); w.pod<uint8_t>(r.exited); w.pod(r.exit_code); w.pod(r.signal);
    w.pod(r.cpu_s); w.pod(r.wall_s); w.pod(r.peak_memory_kb);
    w.str(r.out); w.str(r.err); w.pod<uint8_t>(r.out_truncated); w.pod<uint8_t>(r.err_truncated);
    w.str(r.error);
    return w.take();
}

bool decode_result(Reader& rd, RunResult& r) {
    r.status = rd.pod<Status>(); r.exited = rd.pod<uint8_t>(); r.exit_code = rd.pod<int32_t>();
    r.signal = rd.pod<int32_t>(); r.cpu_s = rd.pod<double>(); r.wall_s = rd.pod<double>();
    r.peak_memory_kb = rd.pod<int64_t>(); r.out = rd.str(); r.err = rd.str();
    r.out_truncated = rd.pod<uint8_t>(); r.err_truncated = rd.pod<uint8_t>(); r.error = rd.str();
    return rd.ok();
}

std::vector<std::string> split_frames(std::string& buf) {
    std::vector<std::string> out;
    size_t pos = 0;
    while (buf.size() - pos >= 4) {
        uint32_t n;
        std::memcpy(&n, buf.data() + pos, 4);
        if (buf.size() - pos - 4 < n) break;
        out.emplace_back(buf, pos + 4, n);
        pos += 4 + n;
    }
    buf.erase(0, pos);
    return out;
}

}  // namespace hf
