// The SIMT emulator's scheduler (see simt/simt.h): fibers, barriers, warp exchanges, launch checks.
#include "simt/simt.h"

#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// Bounds of the static __shared__ variables (a section named like a C identifier gets them from
// the linker); weak: a build whose kernels declare none has no section.
extern "C" {
extern char __start_simt_shared[] __attribute__((weak, visibility("hidden")));
extern char __stop_simt_shared[] __attribute__((weak, visibility("hidden")));
}

namespace simt {
namespace {

constexpr int kWarp = 32;
constexpr unsigned kMaxThreads = 1024;
constexpr size_t kDefaultDynamicSmem = 48 << 10;
constexpr size_t kMaxDynamicSmem = 227 << 10;  // sm_90 opt-in limit (232448 bytes)
constexpr int kSms = 132;                      // the emulated device: an H100 SXM's SM count
// Fiber stacks: the kernels keep a few hundred bytes of locals; AddressSanitizer's redzones
// and its report need more.
#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kStack = 512 << 10;
#else
constexpr size_t kStack = 128 << 10;
#endif
constexpr unsigned char kPoison = 0xff;  // NaN in fp16/bf16/fp32/fp64, -1 in integers

enum class State { Ready, AtBarrier, AtWarp, Done };

struct Fiber {
  ThreadState t;
  int linear = 0;
  State state = State::Ready;
  ucontext_t ctx;
  char* stack = nullptr;
  // the pending barrier or warp op
  const char* file = nullptr;
  int line = 0;
  WarpOp op = WarpOp::Sync;
  uint32_t mask = 0;
  int arg = 0, width = 32, pred = 0;
  size_t size = 0;
  unsigned char value[8];
  unsigned char result[8];
  uint32_t word = 0;
};

struct Launch {
  BlockState block;
  std::vector<Fiber> fibers;
  Fiber* current = nullptr;
  // Zeroed: swapcontext saves registers and the signal mask, never uc_stack, and ASan's
  // swapcontext clears the shadow of the uc_stack of the context it switches to; the stack
  // garbage there once named a range past the end of memory and ASan aborted (CHECK failed:
  // asan_poisoning.cpp:38, in make test-asan).
  ucontext_t scheduler{};
  void (*body)(void*) = nullptr;
  void* ctx = nullptr;
  std::vector<unsigned char> dynamic;
  std::string error;  // set by the first failure; the launch stops there
#if defined(__SANITIZE_ADDRESS__)
  void* fake_stack = nullptr;
  const void* scheduler_stack = nullptr;
  size_t scheduler_stack_size = 0;
#endif
};

std::mutex g_mutex;  // one emulated launch at a time: the static shared section is process-wide
Launch* g_launch = nullptr;
Schedule g_order = Schedule::Forward;
uint64_t g_seed = 0, g_launches = 0;
cudaError_t g_last = cudaSuccess;
std::string g_message;
std::unordered_map<const void*, size_t> g_smem_optin;
std::unordered_map<const void*, uint64_t> g_launch_counts;
std::vector<char*> g_stacks;

char* stack_at(size_t i) {
  while (g_stacks.size() <= i) {
    // one guard page below each stack: an overflow faults instead of corrupting a neighbour
    void* m = mmap(nullptr, kStack + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return nullptr;
    mprotect(m, 4096, PROT_NONE);
    g_stacks.push_back(static_cast<char*>(m) + 4096);
  }
  return g_stacks[i];
}

std::string where(const Fiber& f) {
  const auto& b = g_launch->block.idx;
  return "thread (" + std::to_string(f.t.idx.x) + "," + std::to_string(f.t.idx.y) + "," + std::to_string(f.t.idx.z) +
         ") of block (" + std::to_string(b.x) + "," + std::to_string(b.y) + "," + std::to_string(b.z) + ")";
}

std::string site(const char* file, int line) { return std::string(file ? file : "?") + ":" + std::to_string(line); }

void fail(const std::string& message) {
  if (g_launch->error.empty()) g_launch->error = "simt: " + message;
}

// Switches between the scheduler and a fiber (with AddressSanitizer told which stack is live).
void enter(Launch& l, Fiber& f) {
  l.current = &f;
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_start_switch_fiber(&l.fake_stack, f.stack, kStack);
#endif
  swapcontext(&l.scheduler, &f.ctx);
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(l.fake_stack, nullptr, nullptr);
#endif
  l.current = nullptr;
}

void leave(Launch& l, Fiber& f, [[maybe_unused]] bool finished) {  // finished: ASan drops its fake stack
#if defined(__SANITIZE_ADDRESS__)
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(finished ? nullptr : &fake, l.scheduler_stack, l.scheduler_stack_size);
#endif
  swapcontext(&f.ctx, &l.scheduler);
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(fake, &l.scheduler_stack, &l.scheduler_stack_size);
#endif
}

void fiber_main() {
  Launch& l = *g_launch;
  Fiber& f = *l.current;
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(nullptr, &l.scheduler_stack, &l.scheduler_stack_size);
#endif
  l.body(l.ctx);
  f.state = State::Done;
  leave(l, f, true);
}

// Parks the running fiber until the scheduler releases it.
void park(State s) {
  Launch& l = *g_launch;
  Fiber& f = *l.current;
  f.state = s;
  leave(l, f, false);
}

int warp_of(const Fiber& f) { return f.linear / kWarp; }

uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Computes lane results of the warp op that lanes `members` (all of `mask`, all waiting) meet at.
void complete_warp_op(Launch& l, int warp, uint32_t mask) {
  Fiber* lanes[kWarp] = {};
  for (int i = 0; i < kWarp; ++i)
    if (mask & (1u << i)) lanes[i] = &l.fibers[warp * kWarp + i];
  uint32_t preds = 0;
  for (int i = 0; i < kWarp; ++i)
    if (lanes[i] && lanes[i]->pred) preds |= 1u << i;
  for (int i = 0; i < kWarp; ++i) {
    Fiber* f = lanes[i];
    if (!f) continue;
    const int w = f->width;
    int src = i;
    switch (f->op) {
      case WarpOp::Idx: src = (i & ~(w - 1)) | (f->arg & (w - 1)); break;
      case WarpOp::Up: src = (i & (w - 1)) >= f->arg ? i - f->arg : i; break;
      case WarpOp::Down: src = (i & (w - 1)) + f->arg < w ? i + f->arg : i; break;
      case WarpOp::Xor: src = (i ^ f->arg) < (i & ~(w - 1)) + w ? i ^ f->arg : i; break;
      default: break;
    }
    if (f->op == WarpOp::Ballot) f->word = preds;
    else if (f->op == WarpOp::Any) f->word = preds != 0;
    else if (f->op == WarpOp::All) f->word = preds == mask;
    else if (f->op != WarpOp::Sync) {
      // a source lane outside the mask does not take part: its value is undefined on a GPU
      if (lanes[src]) std::memcpy(f->result, lanes[src]->value, f->size);
      else std::memset(f->result, kPoison, f->size);
    }
    f->state = State::Ready;
  }
}

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::Sync: return "__syncwarp";
    case WarpOp::Idx: return "__shfl_sync";
    case WarpOp::Up: return "__shfl_up_sync";
    case WarpOp::Down: return "__shfl_down_sync";
    case WarpOp::Xor: return "__shfl_xor_sync";
    case WarpOp::Ballot: return "__ballot_sync";
    case WarpOp::Any: return "__any_sync";
    case WarpOp::All: return "__all_sync";
  }
  return "?";
}

// Whether the warp op that `f` waits at can complete: 1 when every lane of its mask waits at
// the same op, 0 while some lane has not arrived, -1 on misuse (the launch error is set).
int warp_op_ready(Launch& l, const Fiber& f) {
  const int n = static_cast<int>(l.fibers.size()), warp = warp_of(f);
  int ready = 1;
  for (int i = 0; i < kWarp; ++i) {
    if (!(f.mask & (1u << i))) continue;
    const int j = warp * kWarp + i;
    if (j >= n) {
      fail(std::string(op_name(f.op)) + " at " + site(f.file, f.line) + ": mask names lane " + std::to_string(i) +
           " of a warp the block fills only to lane " + std::to_string(n - 1 - warp * kWarp) + " (" + where(f) + ")");
      return -1;
    }
    const Fiber& o = l.fibers[j];
    if (o.state == State::Done) {
      fail(std::string(op_name(f.op)) + " at " + site(f.file, f.line) + ": lane " + std::to_string(i) +
           " of the mask exited without reaching it (" + where(f) + ")");
      return -1;
    }
    if (o.state != State::AtWarp) {
      ready = 0;
    } else if (o.mask != f.mask || o.op != f.op || o.size != f.size || o.width != f.width) {
      fail("lanes of one mask diverge: " + where(f) + " waits at " + op_name(f.op) + " " + site(f.file, f.line) +
           ", " + where(o) + " at " + op_name(o.op) + " " + site(o.file, o.line));
      return -1;
    }
  }
  return ready;
}

// Completes the warp ops of `warp` that can complete; false on misuse.
bool complete_warp(Launch& l, int warp, bool& released) {
  const int n = static_cast<int>(l.fibers.size());
  for (int j = warp * kWarp; j < std::min(n, (warp + 1) * kWarp); ++j) {
    Fiber& f = l.fibers[j];
    if (f.state != State::AtWarp) continue;
    const int r = warp_op_ready(l, f);
    if (r < 0) return false;
    if (r > 0) {
      complete_warp_op(l, warp, f.mask);
      released = true;
    }
  }
  return true;
}

// Releases what can go on once no fiber is ready: complete warp ops, else a block barrier that
// every live thread waits at. Returns false when the block is finished or stuck (error set).
bool release(Launch& l) {
  const int n = static_cast<int>(l.fibers.size());
  bool released = false;
  for (int w = 0; w * kWarp < n; ++w)
    if (!complete_warp(l, w, released)) return false;
  if (released) return true;
  int waiting = 0, done = 0;
  const Fiber* first = nullptr;
  for (const Fiber& f : l.fibers) {
    if (f.state == State::Done) ++done;
    if (f.state == State::AtBarrier) {
      ++waiting;
      if (!first) first = &f;
      else if (f.file != first->file || f.line != first->line) {
        fail("threads of one block wait at different __syncthreads: " + where(*first) + " at " +
             site(first->file, first->line) + ", " + where(f) + " at " + site(f.file, f.line));
        return false;
      }
    }
  }
  if (done == n) return false;
  if (waiting > 0 && waiting + done == n && done > 0) {
    const Fiber* exited = nullptr;
    for (const Fiber& f : l.fibers)
      if (f.state == State::Done) { exited = &f; break; }
    fail("__syncthreads at " + site(first->file, first->line) + " is not reached by every thread of the block: " +
         std::to_string(done) + " exited, " + where(*exited) + " among them");
    return false;
  }
  if (waiting + done == n) {
    for (Fiber& f : l.fibers)
      if (f.state == State::AtBarrier) f.state = State::Ready;
    return true;
  }
  for (const Fiber& f : l.fibers) {
    if (f.state == State::AtWarp) {
      fail(std::string("deadlock: ") + where(f) + " waits at " + op_name(f.op) + " " + site(f.file, f.line) +
           " for a lane that waits at a __syncthreads");
      return false;
    }
  }
  fail("deadlock: no thread can go on");
  return false;
}

// Runs fiber k; when it completes its warp's exchange, runs that warp on (its lanes in `order`)
// for as long as its exchanges complete: a warp runs ahead of the warps after it in the order
// up to a block barrier, as warps do on a GPU, so a missing __syncthreads between one warp's
// write and another's read shows.
bool run_fiber(Launch& l, const std::vector<int>& order, int k) {
  enter(l, l.fibers[k]);
  if (!l.error.empty()) return false;
  const int warp = warp_of(l.fibers[k]);
  for (;;) {
    bool released = false;
    if (!complete_warp(l, warp, released)) return false;
    if (!released) return true;
    for (int j : order) {
      Fiber& f = l.fibers[j];
      if (warp_of(f) != warp || f.state != State::Ready) continue;
      enter(l, f);
      if (!l.error.empty()) return false;
    }
  }
}

void run_block(Launch& l, uint64_t block_seed) {
  if (__start_simt_shared != nullptr)
    std::memset(__start_simt_shared, kPoison, static_cast<size_t>(__stop_simt_shared - __start_simt_shared));
  if (!l.dynamic.empty()) std::memset(l.dynamic.data(), kPoison, l.dynamic.size());
  const dim3 d = l.block.dim;
  int i = 0;
  for (unsigned z = 0; z < d.z; ++z)
    for (unsigned y = 0; y < d.y; ++y)
      for (unsigned x = 0; x < d.x; ++x, ++i) {
        Fiber& f = l.fibers[i];
        f.t.idx = uint3{x, y, z};
        f.linear = i;
        f.state = State::Ready;
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack;
        f.ctx.uc_stack.ss_size = kStack;
        f.ctx.uc_link = nullptr;
        makecontext(&f.ctx, fiber_main, 0);
      }
  const int n = static_cast<int>(l.fibers.size());
  std::vector<int> order(n);
  for (uint64_t round = 0;; ++round) {
    for (int k = 0; k < n; ++k) order[k] = g_order == Schedule::Reverse ? n - 1 - k : k;
    if (g_order == Schedule::Shuffle) {
      uint64_t s = mix(block_seed ^ mix(round));
      for (int k = n - 1; k > 0; --k) {
        s = mix(s);
        std::swap(order[k], order[s % static_cast<uint64_t>(k + 1)]);
      }
    }
    for (int k : order)
      if (l.fibers[k].state == State::Ready && !run_fiber(l, order, k)) return;
    if (!release(l)) return;
  }
}

cudaError_t set_error(cudaError_t e, const std::string& message) {
  g_last = e;
  g_message = message;
  return e;
}

}  // namespace

const ThreadState& this_thread() { return g_launch->current->t; }
const BlockState& this_block() { return g_launch->block; }

void set_schedule(Schedule order, uint64_t seed) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_order = order;
  g_seed = seed;
  g_launches = 0;  // the shuffles of the launches that follow depend on the seed only
}

void syncthreads(const char* file, int line) {
  Fiber& f = *g_launch->current;
  f.file = file;
  f.line = line;
  park(State::AtBarrier);
}

uint32_t warp_exchange(WarpOp op, uint32_t mask, const void* value, size_t size, int arg, int width, int pred,
                       void* out, const char* file, int line) {
  Launch& l = *g_launch;
  Fiber& f = *l.current;
  const int lane = f.linear % kWarp;
  if (!(mask & (1u << lane))) {
    fail(std::string(op_name(op)) + " at " + site(file, line) + ": the mask does not include the calling lane (" +
         where(f) + ")");
  } else if (width < 1 || width > kWarp || (width & (width - 1)) != 0) {
    fail(std::string(op_name(op)) + " at " + site(file, line) + ": width " + std::to_string(width) +
         " is not a power of 2 up to 32");
  } else if ((op == WarpOp::Up || op == WarpOp::Down || op == WarpOp::Xor) && (arg < 0 || arg >= kWarp)) {
    fail(std::string(op_name(op)) + " at " + site(file, line) + ": lane offset " + std::to_string(arg) +
         " outside 0..31");
  }
  f.op = op;
  f.mask = mask;
  f.arg = arg;
  f.width = width;
  f.pred = pred;
  f.size = size;
  f.file = file;
  f.line = line;
  if (size) std::memcpy(f.value, value, size);
  park(State::AtWarp);  // with an error set, the scheduler abandons the launch here
  if (size) std::memcpy(out, f.result, size);
  return f.word;
}

void* dynamic_shared() { return g_launch->dynamic.empty() ? nullptr : g_launch->dynamic.data(); }

cudaError_t run(const void* kernel, dim3 grid, dim3 block, size_t dynamic_smem, void (*body)(void*), void* ctx) {
  std::lock_guard<std::mutex> lock(g_mutex);
  const uint64_t threads = static_cast<uint64_t>(block.x) * block.y * block.z;
  if (threads == 0 || threads > kMaxThreads || block.x > 1024 || block.y > 1024 || block.z > 64)
    return set_error(cudaErrorInvalidConfiguration,
                     "simt: block (" + std::to_string(block.x) + "," + std::to_string(block.y) + "," +
                         std::to_string(block.z) + ") is over the GPU's limits (1024 threads; x, y <= 1024, z <= 64)");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
    return set_error(cudaErrorInvalidConfiguration,
                     "simt: grid (" + std::to_string(grid.x) + "," + std::to_string(grid.y) + "," +
                         std::to_string(grid.z) + ") is over the GPU's limits (x < 2^31, y, z <= 65535, none 0)");
  const auto optin = g_smem_optin.find(kernel);
  const size_t smem_limit = optin == g_smem_optin.end() ? kDefaultDynamicSmem : optin->second;
  if (dynamic_smem > smem_limit)
    return set_error(cudaErrorInvalidValue,
                     "simt: " + std::to_string(dynamic_smem) + " bytes of dynamic shared memory, over the " +
                         std::to_string(smem_limit) + " this kernel may use (48 KiB without cudaFuncSetAttribute's " +
                         "cudaFuncAttributeMaxDynamicSharedMemorySize, 227 KiB with it)");
  ++g_launch_counts[kernel];
  Launch l;
  l.block.dim = block;
  l.block.grid = grid;
  l.body = body;
  l.ctx = ctx;
  l.dynamic.resize(dynamic_smem);
  l.fibers.resize(threads);
  for (size_t i = 0; i < threads; ++i) {
    l.fibers[i].stack = stack_at(i);
    if (!l.fibers[i].stack) return set_error(cudaErrorMemoryAllocation, "simt: cannot map a fiber stack");
  }
  g_launch = &l;
  const uint64_t launch_seed = mix(g_seed ^ mix(++g_launches));
  for (unsigned z = 0; z < grid.z && l.error.empty(); ++z)
    for (unsigned y = 0; y < grid.y && l.error.empty(); ++y)
      for (unsigned x = 0; x < grid.x && l.error.empty(); ++x) {
        l.block.idx = uint3{x, y, z};
        run_block(l, mix(launch_seed ^ (static_cast<uint64_t>(z) << 48 | static_cast<uint64_t>(y) << 32 | x)));
      }
  g_launch = nullptr;
  if (!l.error.empty()) return set_error(cudaErrorLaunchFailure, l.error);
  return cudaSuccess;
}

std::vector<std::pair<const void*, uint64_t>> launch_counts() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return {g_launch_counts.begin(), g_launch_counts.end()};
}

cudaError_t get_last_error() {
  const cudaError_t e = g_last;
  g_last = cudaSuccess;
  return e;
}

cudaError_t peek_at_last_error() { return g_last; }

const char* get_error_string(cudaError_t e) { return e == cudaSuccess ? "no error" : g_message.c_str(); }

cudaError_t get_device(int* device) {
  *device = 0;
  return cudaSuccess;
}

cudaError_t device_get_attribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0) return set_error(cudaErrorInvalidDevice, "simt: the emulator has one device, 0");
  switch (attr) {
    case cudaDevAttrMultiProcessorCount: *value = kSms; return cudaSuccess;
    case cudaDevAttrMaxThreadsPerBlock: *value = static_cast<int>(kMaxThreads); return cudaSuccess;
    case cudaDevAttrWarpSize: *value = kWarp; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = static_cast<int>(kMaxDynamicSmem); return cudaSuccess;
    default:
      return set_error(cudaErrorInvalidValue, "simt: device attribute " + std::to_string(attr) + " is not emulated");
  }
}

cudaError_t func_set_attribute(const void* kernel, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize)
    return set_error(cudaErrorInvalidValue, "simt: function attribute " + std::to_string(attr) + " is not emulated");
  if (value < 0 || static_cast<size_t>(value) > kMaxDynamicSmem)
    return set_error(cudaErrorInvalidValue, "simt: " + std::to_string(value) +
                                                " bytes of dynamic shared memory is over sm_90's 227 KiB");
  std::lock_guard<std::mutex> lock(g_mutex);
  g_smem_optin[kernel] = static_cast<size_t>(value);
  return cudaSuccess;
}

}  // namespace simt
