// The only pybind11 file: exposes the client (the caller's side of the zygote) as halo_forge._sandbox.
#include "client.hpp"
#include "verdict.hpp"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdio>
#include <initializer_list>

namespace py = pybind11;

namespace {

const char* status_names[] = {"ok", "runtime_error", "timeout", "memory_limit", "output_limit", "sandbox_error"};

py::tuple result_tuple(hf::RunResult& r) {
    py::object code = r.exited ? py::object(py::int_(r.exit_code)) : py::object(py::none());
    py::object sig = r.signal ? py::object(py::int_(r.signal)) : py::object(py::none());
    return py::make_tuple(r.id, status_names[int(r.status)], code, sig, r.cpu_s, r.wall_s, r.peak_memory_kb,
                          py::bytes(r.out), py::bytes(r.err), r.out_truncated, r.err_truncated, r.error);
}

// halo_forge.sandbox.Limits._as_tuple(): the nine fields in declaration order.
hf::Limits limits_from(const py::tuple& t) {
    if (t.size() != 9) throw py::value_error("limits: expected 9 values");
    hf::Limits l;
    l.cpu_s = t[0].cast<double>();
    l.wall_s = t[1].cast<double>();
    l.memory_mb = t[2].cast<int64_t>();
    l.output_bytes = t[3].cast<int64_t>();
    l.file_size_mb = t[4].cast<int64_t>();
    l.processes = t[5].cast<int64_t>();
    l.open_files = t[6].cast<int64_t>();
    l.stack_mb = t[7].cast<int64_t>();
    l.disk_mb = t[8].cast<int64_t>();
    return l;
}

template <class E>
E pick(const char* what, const std::string& name, std::initializer_list<std::pair<const char*, E>> table) {
    for (auto& [n, v] : table)
        if (name == n) return v;
    std::string known;
    for (auto& [n, v] : table) known += std::string(known.empty() ? "" : ", ") + n;
    throw py::value_error(std::string(what) + ": unknown '" + name + "' (one of " + known + ")");
}

// The zygote's verdict on a run that ended as described; for tests (no process is run).
py::tuple judge(const std::string& report, py::object exit_code, py::object signal, const std::string& killed,
                const std::string& step, int err_no, bool disk_full, double cpu_s, int64_t peak_memory_kb,
                py::bytes err, const std::string& exe, py::tuple limits) {
    hf::ChildReport last{};
    last.kind = pick<int32_t>("report", report,
                              {{"none", 0}, {"setup_failed", hf::kSetupFailed}, {"exec_failed", hf::kExecFailed},
                               {"done", hf::kDone}});
    if (last.kind == hf::kDone) {
        if (exit_code.is_none() == signal.is_none())
            throw py::value_error("judge: a 'done' report needs exactly one of exit_code and signal");
        // The wait status the init would have reported (<sys/wait.h> layout).
        last.value = exit_code.is_none() ? (signal.cast<int>() & 0x7f) : ((exit_code.cast<int>() & 0xff) << 8);
        last.err = disk_full ? hf::kDiskFull : 0;
    } else {
        last.err = err_no;
    }
    std::snprintf(last.step, sizeof last.step, "%s", step.c_str());
    hf::RunResult r;
    r.cpu_s = cpu_s;
    r.peak_memory_kb = peak_memory_kb;
    r.err = std::string(err);
    hf::Kill k = pick<hf::Kill>("killed", killed,
                                {{"none", hf::Kill::None}, {"wall", hf::Kill::Wall}, {"output", hf::Kill::Output},
                                 {"cancel", hf::Kill::Cancel}, {"shutdown", hf::Kill::Shutdown}});
    hf::judge(r, last, k, limits_from(limits), exe);
    py::object code = r.exited ? py::object(py::int_(r.exit_code)) : py::object(py::none());
    py::object sig = r.signal ? py::object(py::int_(r.signal)) : py::object(py::none());
    return py::make_tuple(status_names[int(r.status)], code, sig, r.error);
}

}  // namespace

PYBIND11_MODULE(_sandbox, m) {
    m.doc() = "halo-forge sandbox core: a zygote process that runs hostile programs contained.";

    py::class_<hf::Client>(m, "Client")
        .def(py::init<const std::string&, const std::string&, int, int>(),
             py::arg("zygote"), py::arg("base_dir"), py::arg("max_concurrency"), py::arg("spares") = 0,
             py::call_guard<py::gil_scoped_release>())
        .def("submit",
             [](hf::Client& c, uint64_t id, std::string exe, std::vector<std::string> argv,
                std::vector<std::string> envp, std::string cwd, py::bytes stdin_data,
                std::vector<std::string> ro_paths, py::tuple limits, uint64_t peer, bool warm) {
                 hf::RunRequest r;
                 r.id = id;
                 r.exe = std::move(exe);
                 r.argv = std::move(argv);
                 r.envp = std::move(envp);
                 r.cwd = std::move(cwd);
                 r.stdin_data = std::string(stdin_data);
                 r.ro_paths = std::move(ro_paths);
                 r.limits = limits_from(limits);
                 r.peer = peer;
                 r.warm = warm;
                 py::gil_scoped_release nogil;
                 c.submit(r);
             },
             py::arg("id"), py::arg("exe"), py::arg("argv"), py::arg("envp"), py::arg("cwd"),
             py::arg("stdin_data"), py::arg("ro_paths"), py::arg("limits"), py::arg("peer") = 0, py::arg("warm") = false)
        .def("start_template",
             [](hf::Client& c, std::string exe, std::vector<std::string> argv, std::vector<std::string> envp,
                py::bytes data, std::vector<std::string> ro_paths) {
                 hf::RunRequest r;
                 r.exe = std::move(exe);
                 r.argv = std::move(argv);
                 r.envp = std::move(envp);
                 r.stdin_data = std::string(data);
                 r.ro_paths = std::move(ro_paths);
                 py::gil_scoped_release nogil;
                 c.start_template(r);
             },
             py::arg("exe"), py::arg("argv"), py::arg("envp"), py::arg("data"), py::arg("ro_paths"))
        .def("cancel", &hf::Client::cancel, py::call_guard<py::gil_scoped_release>())
        .def("take",
             [](hf::Client& c) {
                 bool alive = true;
                 std::vector<hf::RunResult> rs;
                 {
                     py::gil_scoped_release nogil;
                     rs = c.take(alive);
                 }
                 py::list out;
                 for (auto& r : rs) out.append(result_tuple(r));
                 return py::make_tuple(alive, out);
             })
        .def("close", &hf::Client::close, py::call_guard<py::gil_scoped_release>())
        .def("fileno", &hf::Client::fileno)
        .def_property_readonly("zygote_pid", &hf::Client::zygote_pid)
        .def_property_readonly("run_uid", &hf::Client::run_uid)
        .def_property_readonly("run_gid", &hf::Client::run_gid)
        .def_property_readonly("chown_workdirs", &hf::Client::chown_workdirs)
        .def("protections", &hf::Client::protections);

    m.def("judge", &judge,
          "The zygote's verdict on a run that ended as described: (status, exit_code, signal, error).\n"
          "report: none | setup_failed | exec_failed | done; killed: none | wall | output | cancel | shutdown.",
          py::arg("report"), py::kw_only(), py::arg("exit_code") = py::none(), py::arg("signal") = py::none(),
          py::arg("killed") = "none", py::arg("step") = "", py::arg("errno") = 0, py::arg("disk_full") = false,
          py::arg("cpu_s") = 0.0, py::arg("peak_memory_kb") = 0, py::arg("err") = py::bytes(""),
          py::arg("exe") = "", py::arg("limits"));
}
