// Parallel tasks over a work list, shared by the multi-tensor CPU kernels (optim, sasa).
#pragma once

#include <cstdint>
#include <vector>

namespace tricks {

// The item index where each task starts, then n_items: consecutive items grouped until a task
// holds at least min_elements elements (items range from one row of 9 elements to chunks of
// 32K), so that equal task counts per thread give about equal element counts.
template <typename Item>
std::vector<int64_t> task_starts(const Item* items, int64_t n_items, int64_t min_elements) {
  std::vector<int64_t> tasks{0};
  int64_t acc_len = 0;
  for (int64_t j = 0; j < n_items; ++j) {
    acc_len += items[j].len;
    if (acc_len >= min_elements) {
      tasks.push_back(j + 1);
      acc_len = 0;
    }
  }
  if (tasks.back() != n_items) tasks.push_back(n_items);
  return tasks;
}

}  // namespace tricks
