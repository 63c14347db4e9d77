// Maps the library's exceptions to Python with their messages unchanged:
// InvalidArgument -> ValueError; CudaError and Timeout -> RuntimeError (as deep_ep callers expect).
#include <exception>

#include "bindings.hpp"
#include "moe_ep/errors.hpp"

namespace moe_ep::bindings {

void bind_errors(nb::module_& m) {
  (void)m;
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const InvalidArgument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const Timeout& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (const CudaError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });
}

}  // namespace moe_ep::bindings
