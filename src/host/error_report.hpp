// Turns a device error record into a message and the matching exception type.
#pragma once
#include <string>

#include "protocol/error_record.hpp"

namespace moe_ep::host {

std::string describe_error(const protocol::ErrorRecord& record);
[[noreturn]] void throw_error(const protocol::ErrorRecord& record, const std::string& message);

}  // namespace moe_ep::host
