# GIN transport (NCCL GPU-initiated networking), optional. MOE_EP_WITH_GIN: AUTO (default:
# on when NCCL >= 2.28.7 with nccl_device/gin.h, libnccl and a working nvcc compile of the
# device headers are found), ON (missing pieces are an error) or OFF. When on, moe_ep links
# libnccl (shared) and defines MOE_EP_WITH_GIN=1 for itself and its users.
set(MOE_EP_WITH_GIN AUTO CACHE STRING "GIN transport via the NCCL device API: AUTO, ON or OFF")
set_property(CACHE MOE_EP_WITH_GIN PROPERTY STRINGS AUTO ON OFF)
set(NCCL_ROOT "$ENV{NCCL_ROOT}" CACHE PATH "NCCL install prefix (include/, lib/) to prefer")

string(TOUPPER "${MOE_EP_WITH_GIN}" _moe_ep_gin_mode)
if(NOT _moe_ep_gin_mode STREQUAL "AUTO")
  if(MOE_EP_WITH_GIN)
    set(_moe_ep_gin_mode ON)
  else()
    set(_moe_ep_gin_mode OFF)
  endif()
endif()

# Why GIN stays off (empty: found). ON turns it into an error, AUTO into a message.
set(_moe_ep_gin_missing "")
if(_moe_ep_gin_mode STREQUAL "OFF")
  set(_moe_ep_gin_missing "MOE_EP_WITH_GIN=OFF")
else()
  # Where to look, in order: NCCL_ROOT, the CUDA toolkit, the nvidia-nccl Python wheel.
  set(_moe_ep_nccl_prefixes)
  if(NCCL_ROOT)
    list(APPEND _moe_ep_nccl_prefixes "${NCCL_ROOT}")
  endif()
  list(APPEND _moe_ep_nccl_prefixes "${CUDAToolkit_LIBRARY_ROOT}" "${CUDAToolkit_TARGET_DIR}")
  find_program(MOE_EP_PYTHON3 NAMES python3 python)
  if(MOE_EP_PYTHON3)
    execute_process(
      COMMAND "${MOE_EP_PYTHON3}" -c "import nvidia.nccl as m; print(list(m.__path__)[0])"
      OUTPUT_VARIABLE _moe_ep_nccl_wheel OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _moe_ep_rc)
    if(_moe_ep_rc EQUAL 0 AND _moe_ep_nccl_wheel)
      list(APPEND _moe_ep_nccl_prefixes "${_moe_ep_nccl_wheel}")
    endif()
  endif()
  find_path(MOE_EP_NCCL_INCLUDE_DIR nccl.h
    HINTS ${_moe_ep_nccl_prefixes} ${CUDAToolkit_INCLUDE_DIRS} PATH_SUFFIXES include)
  # The wheel ships only libnccl.so.2 (no libnccl.so link).
  find_library(MOE_EP_NCCL_LIBRARY NAMES nccl libnccl.so.2
    HINTS ${_moe_ep_nccl_prefixes} ${CUDAToolkit_LIBRARY_DIR} PATH_SUFFIXES lib lib64)

  if(NOT MOE_EP_NCCL_INCLUDE_DIR)
    set(_moe_ep_gin_missing "nccl.h not found (set NCCL_ROOT)")
  elseif(NOT EXISTS "${MOE_EP_NCCL_INCLUDE_DIR}/nccl_device/gin.h")
    set(_moe_ep_gin_missing "${MOE_EP_NCCL_INCLUDE_DIR} has no nccl_device/gin.h (NCCL < 2.28)")
  elseif(NOT MOE_EP_NCCL_LIBRARY)
    set(_moe_ep_gin_missing "libnccl not found (set NCCL_ROOT)")
  else()
    file(STRINGS "${MOE_EP_NCCL_INCLUDE_DIR}/nccl.h" _moe_ep_nccl_code REGEX "^#define NCCL_VERSION_CODE [0-9]+")
    string(REGEX REPLACE "^#define NCCL_VERSION_CODE ([0-9]+).*" "\\1" _moe_ep_nccl_code "${_moe_ep_nccl_code}")
    # ncclGin (put, signals, flush) exists since 2.28.7.
    if(NOT _moe_ep_nccl_code OR _moe_ep_nccl_code LESS 22807)
      set(_moe_ep_gin_missing "NCCL ${_moe_ep_nccl_code} in ${MOE_EP_NCCL_INCLUDE_DIR} is older than 2.28.7")
    endif()
  endif()

  # The device API is header-only (inline functions, no extern __device__ symbols): it
  # needs neither -rdc nor a device library. Check that nvcc takes it with our flags (run
  # by hand: try_compile would drop the C++20 flag the top-level CMakeLists teaches CMake).
  if(NOT _moe_ep_gin_missing AND NOT MOE_EP_NVCC_NCCL_CHECKED STREQUAL "${MOE_EP_NCCL_INCLUDE_DIR}")
    set(_moe_ep_src "${CMAKE_CURRENT_BINARY_DIR}/gin_nvcc_check.cu")
    file(WRITE "${_moe_ep_src}" [[
#include <nccl.h>
#include <nccl_device.h>
__global__ void k(ncclDevComm comm, ncclWindow_t win) {
  ncclGin gin(comm, 0);
  gin.put(ncclTeamWorld(comm), 0, win, 0, win, 16, 16, ncclGin_SignalAdd{0, 1});
  gin.flush(ncclCoopThread());
  (void)gin.readSignal(0);
}
]])
    list(GET CMAKE_CUDA_ARCHITECTURES 0 _moe_ep_arch)
    string(REGEX MATCH "^[0-9]+" _moe_ep_arch "${_moe_ep_arch}")  # 90-real, native, ...
    if(NOT _moe_ep_arch)
      set(_moe_ep_arch 90)
    endif()
    execute_process(
      COMMAND "${CMAKE_CUDA_COMPILER}" -std=c++20 --expt-relaxed-constexpr "-arch=sm_${_moe_ep_arch}"
              "-I${MOE_EP_NCCL_INCLUDE_DIR}" -c "${_moe_ep_src}" -o "${_moe_ep_src}.o"
      RESULT_VARIABLE _moe_ep_rc OUTPUT_VARIABLE _moe_ep_out ERROR_VARIABLE _moe_ep_out)
    if(NOT _moe_ep_rc EQUAL 0)
      string(SUBSTRING "${_moe_ep_out}" 0 800 _moe_ep_out)
      set(_moe_ep_gin_missing "nvcc does not compile nccl_device.h with -std=c++20: ${_moe_ep_out}")
    else()
      set(MOE_EP_NVCC_NCCL_CHECKED "${MOE_EP_NCCL_INCLUDE_DIR}" CACHE INTERNAL "nccl_device.h compiled with nvcc")
    endif()
  endif()
endif()

if(_moe_ep_gin_missing)
  if(_moe_ep_gin_mode STREQUAL "ON")
    message(FATAL_ERROR "MOE_EP_WITH_GIN=ON, but: ${_moe_ep_gin_missing}")
  endif()
  message(STATUS "moe_ep: GIN transport off: ${_moe_ep_gin_missing}")
  return()
endif()

message(STATUS "moe_ep: GIN transport on: NCCL ${_moe_ep_nccl_code}, ${MOE_EP_NCCL_LIBRARY}")
file(GLOB MOE_EP_GIN_SOURCES CONFIGURE_DEPENDS
  ${CMAKE_CURRENT_LIST_DIR}/*.cpp ${CMAKE_CURRENT_LIST_DIR}/*.cu)
target_sources(moe_ep PRIVATE ${MOE_EP_GIN_SOURCES})
target_include_directories(moe_ep SYSTEM PUBLIC "${MOE_EP_NCCL_INCLUDE_DIR}")
target_compile_definitions(moe_ep PUBLIC MOE_EP_WITH_GIN=1)
# --as-needed: only binaries that really call NCCL (the GIN host object) need libnccl.so.2
# at run time; the rest keep running where NCCL is absent or elsewhere. CMake reads the
# feature in the linking target's directory: define it here and in the top-level scope.
foreach(_moe_ep_scope "" PARENT_SCOPE)
  set(CMAKE_LINK_LIBRARY_USING_MOE_EP_AS_NEEDED
      "LINKER:--push-state,--as-needed" "<LINK_ITEM>" "LINKER:--pop-state" ${_moe_ep_scope})
  set(CMAKE_LINK_LIBRARY_USING_MOE_EP_AS_NEEDED_SUPPORTED TRUE ${_moe_ep_scope})
endforeach()
target_link_libraries(moe_ep PUBLIC "$<LINK_LIBRARY:MOE_EP_AS_NEEDED,${MOE_EP_NCCL_LIBRARY}>")
