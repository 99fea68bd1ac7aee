// The only pybind11 file: exposes the client (the caller's side of the zygote) as halo_forge._sandbox.
#include "client.hpp"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

namespace py = pybind11;

namespace {

py::tuple result_tuple(hf::RunResult& r) {
    static const char* names[] = {"ok", "runtime_error", "timeout", "memory_limit", "output_limit", "sandbox_error"};
    py::object code = r.exited ? py::object(py::int_(r.exit_code)) : py::object(py::none());
    py::object sig = r.signal ? py::object(py::int_(r.signal)) : py::object(py::none());
    return py::make_tuple(r.id, names[int(r.status)], code, sig, r.cpu_s, r.wall_s, r.peak_memory_kb,
                          py::bytes(r.out), py::bytes(r.err), r.out_truncated, r.err_truncated, r.error);
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
                std::vector<std::string> ro_paths, py::tuple limits) {
                 hf::RunRequest r;
                 r.id = id;
                 r.exe = std::move(exe);
                 r.argv = std::move(argv);
                 r.envp = std::move(envp);
                 r.cwd = std::move(cwd);
                 r.stdin_data = std::string(stdin_data);
                 r.ro_paths = std::move(ro_paths);
                 if (limits.size() != 9) throw py::value_error("limits: expected 9 values");
                 r.limits.cpu_s = limits[0].cast<double>();
                 r.limits.wall_s = limits[1].cast<double>();
                 r.limits.memory_mb = limits[2].cast<int64_t>();
                 r.limits.output_bytes = limits[3].cast<int64_t>();
                 r.limits.file_size_mb = limits[4].cast<int64_t>();
                 r.limits.processes = limits[5].cast<int64_t>();
                 r.limits.open_files = limits[6].cast<int64_t>();
                 r.limits.stack_mb = limits[7].cast<int64_t>();
                 r.limits.disk_mb = limits[8].cast<int64_t>();
                 py::gil_scoped_release nogil;
                 c.submit(r);
             })
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
}
