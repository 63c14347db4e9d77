// Entry of the GPU test binary: with no CUDA device it says so and exits 77, which CTest
// reports as "Skipped" (a visible skip, never a silent pass). Started with
// --process-group-child it runs one rank of the process-group test instead.
#include <cstdio>
#include <cstdlib>
#include <string>

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include "support/process_group_child.hpp"

int main(int argc, char** argv) {
  // In-process ranks: a lazily loaded kernel (ours or the harness's) makes its first
  // launch wait for the device while peers' kernels spin on this rank. Load every module
  // with the context instead (this overrides a LAZY setting in the environment).
  setenv("CUDA_MODULE_LOADING", "EAGER", /*overwrite=*/1);
  if (argc == 5 && std::string(argv[1]) == moe_ep::test::kProcessGroupChildFlag) {
    return moe_ep::test::run_process_group_child(std::atoi(argv[2]), std::atoi(argv[3]), argv[4]);
  }
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    std::printf("SKIPPED: no CUDA device (%s); GPU tests did not run\n",
                status != cudaSuccess ? cudaGetErrorString(status) : "device count 0");
    return 77;
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
