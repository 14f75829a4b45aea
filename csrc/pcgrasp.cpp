// Every pcgrasp op schema, in one place. Kernels register per dispatch key in
// their own folders (op_cpu.cpp: CPU, op.cu: CUDA); fake kernels and autograd
// are registered from Python (pcgrasp/ops).
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(pcgrasp, m) {
  m.def("farthest_point_sample(Tensor points, Tensor lengths, Tensor counts, Tensor? start, int K) -> Tensor");
  m.def("knn(Tensor query, Tensor points, Tensor query_lengths, Tensor lengths, int k) -> (Tensor, Tensor)");
  m.def("ball_query(Tensor query, Tensor points, Tensor query_lengths, Tensor lengths, float radius, int k, bool nearest) -> (Tensor dist2, Tensor idx, Tensor count)");
  m.def("gather_points(Tensor features, Tensor idx) -> Tensor");
  m.def("gather_points_backward(Tensor grad, Tensor idx, int N) -> Tensor");
  m.def("three_interpolate(Tensor features, Tensor idx, Tensor weight) -> Tensor");
  m.def("three_interpolate_backward(Tensor grad_out, Tensor features, Tensor idx, Tensor weight) -> (Tensor, Tensor)");
  // contrastive / detection kernels
  m.def("correspondences(Tensor src, Tensor dst, Tensor src_lengths, Tensor dst_lengths, Tensor? src_transform, Tensor? dst_transform, float radius) -> (Tensor idx, Tensor dist2)");
  m.def("radius_pairs(Tensor src, Tensor dst, Tensor src_lengths, Tensor dst_lengths, Tensor? src_transform, Tensor? dst_transform, float radius, int max_pairs) -> Tensor");
  m.def("false_negative_mask(Tensor xyz, float gamma) -> Tensor");
  m.def("point_info_nce(Tensor feat_a, Tensor feat_b, Tensor? xyz, Tensor? valid, float tau, float gamma) -> (Tensor loss, Tensor lse)");
  m.def("point_info_nce_backward(Tensor grad, Tensor feat_a, Tensor feat_b, Tensor? xyz, Tensor? valid, Tensor lse, float tau, float gamma) -> (Tensor, Tensor)");
  m.def("voxelize(Tensor points, float voxel_size, Tensor lengths) -> (Tensor coords, Tensor inverse, Tensor first)");
  m.def("cylinder_query(Tensor query, Tensor rotation, Tensor points, Tensor query_lengths, Tensor lengths, float radius, float hmin, float hmax, int k, bool nearest) -> (Tensor idx, Tensor count)");
  m.def("nearest_neighbor_order(Tensor centers, Tensor lengths) -> Tensor");
  // sparse convolution (pcgrasp.nn)
  m.def("kernel_map(Tensor in_coords, Tensor out_coords, int[] kernel_size, int[] dilation, int[] tensor_stride) -> (Tensor in_idx, Tensor out_idx, Tensor counts)");
  m.def("downsample_coords(Tensor coords, int[] stride) -> (Tensor coords, Tensor inverse)");
  m.def("sparse_conv(Tensor features, Tensor weight, Tensor in_idx, Tensor out_idx, int[] counts, int n_out, int identity, bool transpose_weight) -> Tensor");
  m.def("sparse_conv_weight_grad(Tensor features, Tensor grad, Tensor in_idx, Tensor out_idx, int[] counts, int identity) -> Tensor");
}

// The extension is loaded as a Python module only so that importing it runs
// the static registrations above; it exposes nothing itself.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
