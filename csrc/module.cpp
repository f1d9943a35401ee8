// The tricks_ext operator library and the Python module init of tricks_ext._C. Each op's
// schemas live in its own folder (csrc/<op>/schema.cpp, a TORCH_LIBRARY_FRAGMENT); kernels
// register against them per dispatch key (csrc/<op>/cpu.cpp, csrc/<op>/cuda_binding.cpp); fake
// and Python autograd implementations come from tricks_ext/ops.
#include <Python.h>
#include <torch/library.h>

namespace {
bool has_cuda_kernels() {
#ifdef TRICKS_EXT_WITH_CUDA
  return true;
#else
  return false;
#endif
}
bool has_simt_kernels() {
#ifdef TRICKS_EXT_WITH_SIMT
  return true;
#else
  return false;
#endif
}
}  // namespace

TORCH_LIBRARY(tricks_ext, m) {
  m.def("_has_cuda_kernels() -> bool", &has_cuda_kernels);
  m.def("_has_simt_kernels() -> bool", &has_simt_kernels);
}

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
