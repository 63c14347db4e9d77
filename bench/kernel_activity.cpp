// CUPTI's kernel activity records, loaded at run time (see kernel_activity.hpp).
#include "kernel_activity.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include <cupti.h>

namespace moe_ep::bench {
namespace {

// The entry points used, resolved from the library (the bench does not link it).
struct CuptiApi {
  decltype(&cuptiActivityRegisterCallbacks) register_callbacks = nullptr;
  decltype(&cuptiActivityEnable) enable = nullptr;
  decltype(&cuptiActivityDisable) disable = nullptr;
  decltype(&cuptiActivityFlushAll) flush_all = nullptr;
  decltype(&cuptiActivityGetNextRecord) next_record = nullptr;
  decltype(&cuptiActivityGetNumDroppedRecords) dropped_records = nullptr;
};

struct KernelTimes {
  std::uint64_t start_ns, end_ns;
  const char* name;  // CUPTI's, alive while the library is loaded
};

std::mutex g_mutex;
std::vector<KernelTimes> g_kernels;  // completed records not taken yet
bool g_incomplete = false;           // since the last take: a record dropped or without times
const CuptiApi* g_api = nullptr;

constexpr std::size_t kBufferBytes = std::size_t{4} << 20;

void CUPTIAPI request_buffer(std::uint8_t** buffer, std::size_t* size, std::size_t* max_records) {
  *buffer = static_cast<std::uint8_t*>(std::aligned_alloc(8, kBufferBytes));
  *size = *buffer != nullptr ? kBufferBytes : 0;
  *max_records = 0;  // as many as fit
}

void CUPTIAPI complete_buffer(CUcontext context, std::uint32_t stream, std::uint8_t* buffer, std::size_t,
                              std::size_t valid) {
  CUpti_Activity* record = nullptr;
  std::lock_guard<std::mutex> lock(g_mutex);
  while (g_api->next_record(buffer, valid, &record) == CUPTI_SUCCESS) {
    if (record->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) continue;
    // start, end and name lie in the prefix every version of the kernel record shares.
    const auto* kernel = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
    if (kernel->start == 0 || kernel->end < kernel->start) {  // times not collected (or incomplete)
      g_incomplete = true;
      continue;
    }
    g_kernels.push_back({kernel->start, kernel->end, kernel->name});
  }
  std::size_t dropped = 0;
  if (g_api->dropped_records(context, stream, &dropped) == CUPTI_SUCCESS && dropped > 0) g_incomplete = true;
  std::free(buffer);
}

// Why it could not load (printed once), or "" with g_api set.
std::string load_api() {
  static CuptiApi api;
  std::vector<std::string> paths;
  if (const char* given = std::getenv("MOE_EP_CUPTI_LIB"); given != nullptr && *given != '\0') paths.push_back(given);
  for (const char* path : {"libcupti.so.13", "libcupti.so", "/usr/local/cuda/lib64/libcupti.so.13",
                           "/usr/local/cuda/targets/x86_64-linux/lib/libcupti.so.13",
                           "/usr/local/cuda/extras/CUPTI/lib64/libcupti.so.13"}) {
    paths.push_back(path);
  }
  void* library = nullptr;
  for (const std::string& path : paths) {
    if ((library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL)) != nullptr) break;
  }
  if (library == nullptr) return "libcupti not found (set MOE_EP_CUPTI_LIB)";
  auto resolve = [&](auto& entry, const char* symbol) {
    entry = reinterpret_cast<std::remove_reference_t<decltype(entry)>>(dlsym(library, symbol));
    return entry != nullptr;
  };
  if (!resolve(api.register_callbacks, "cuptiActivityRegisterCallbacks") || !resolve(api.enable, "cuptiActivityEnable") ||
      !resolve(api.disable, "cuptiActivityDisable") || !resolve(api.flush_all, "cuptiActivityFlushAll") ||
      !resolve(api.next_record, "cuptiActivityGetNextRecord") ||
      !resolve(api.dropped_records, "cuptiActivityGetNumDroppedRecords")) {
    return "libcupti lacks an activity entry point";
  }
  g_api = &api;
  if (api.register_callbacks(request_buffer, complete_buffer) != CUPTI_SUCCESS) {
    g_api = nullptr;
    return "cuptiActivityRegisterCallbacks failed";
  }
  return "";
}

// Loads the library and registers the buffers once; false (said once) when unavailable.
bool cupti_ready() {
  static const bool ready = [] {
    const char* wanted = std::getenv("MOE_EP_BENCH_CUPTI");
    if (wanted != nullptr && std::string(wanted) == "0") {
      std::printf("kernel times: off (MOE_EP_BENCH_CUPTI=0)\n");
      return false;
    }
    const std::string why = load_api();
    if (!why.empty()) std::printf("kernel times: not recorded, %s\n", why.c_str());
    return why.empty();
  }();
  return ready;
}

}  // namespace

KernelActivity::KernelActivity() {
  if (!cupti_ready()) return;
  recording_ = g_api->enable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) == CUPTI_SUCCESS;
  if (!recording_) std::printf("kernel times: not recorded, cuptiActivityEnable failed\n");
}

KernelActivity::~KernelActivity() {
  if (!recording_) return;
  g_api->disable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
  g_api->flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  std::lock_guard<std::mutex> lock(g_mutex);
  g_kernels.clear();
}

std::optional<double> KernelActivity::take_span_us(std::string_view name_part) {
  if (!recording_) return std::nullopt;
  g_api->flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);  // delivers every completed record now
  std::vector<KernelTimes> kernels;
  bool incomplete = false;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    kernels.swap(g_kernels);
    std::swap(incomplete, g_incomplete);
  }
  if (incomplete) return std::nullopt;  // a kernel of the span may be missing
  std::uint64_t first = std::numeric_limits<std::uint64_t>::max(), last = 0;
  for (const KernelTimes& k : kernels) {
    if (k.name == nullptr || std::string_view(k.name).find(name_part) == std::string_view::npos) continue;
    first = std::min(first, k.start_ns);
    last = std::max(last, k.end_ns);
  }
  if (last == 0) return std::nullopt;
  return static_cast<double>(last - first) / 1000.0;
}

}  // namespace moe_ep::bench
