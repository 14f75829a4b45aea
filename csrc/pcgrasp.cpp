// Every pcgrasp op schema, in one place. Kernels register per dispatch key in
// their own folders (op_cpu.cpp: CPU, op.cu: CUDA); fake kernels and autograd
// are registered from Python (pcgrasp/ops).
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(pcgrasp, m) {
  m.def("farthest_point_sample(Tensor points, Tensor lengths, Tensor counts, Tensor start, int K) -> Tensor");
  m.def("knn(Tensor query, Tensor points, Tensor query_lengths, Tensor lengths, int k) -> (Tensor, Tensor)");
  m.def("ball_query(Tensor query, Tensor points, Tensor query_lengths, Tensor lengths, float radius, int k, bool nearest) -> (Tensor dist2, Tensor idx, Tensor count)");
  m.def("gather_points(Tensor features, Tensor idx) -> Tensor");
  m.def("gather_points_backward(Tensor grad, Tensor idx, int N) -> Tensor");
  m.def("three_interpolate(Tensor features, Tensor idx, Tensor weight) -> Tensor");
  m.def("three_interpolate_backward(Tensor grad_out, Tensor features, Tensor idx, Tensor weight) -> (Tensor, Tensor)");
}

// The extension is loaded as a Python module only so that importing it runs
// the static registrations above; it exposes nothing itself.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
