// Second derivatives of the C++ autograd functions (csrc/<op>/autograd.cpp). The kernels' backward
// ops have no autograd of their own; when a backward runs with create_graph=True and its inputs
// require grad, the gradients must form a graph autograd can differentiate again. Those backward
// passes call tricks_ext::<op>_graph_backward instead, a CompositeImplicitAutograd op defined in
// Python (tricks_ext/ops/_library.py, define_graph_backward) that differentiates the op's torch
// backend with create_graph=True.
#pragma once

#include <initializer_list>

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

namespace tricks {

// Grad mode is on inside a backward only under create_graph=True.
inline bool wants_graph(std::initializer_list<at::Tensor> tensors) {
  if (!at::GradMode::is_enabled()) return false;
  for (const auto& t : tensors)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

// The op named `name`, looked up at its first use (Python defines it when tricks_ext imports).
template <typename Signature>
c10::TypedOperatorHandle<Signature> graph_backward(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").template typed<Signature>();
}

}  // namespace tricks
