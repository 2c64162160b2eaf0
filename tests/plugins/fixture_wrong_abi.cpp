// Fixture "wrong_abi": written by hand, without FERRY_PLUGIN, claiming ABI
// major 2. The host must refuse it from ferry_plugin_info alone and never
// call ferry_plugin_init.
#include <ferry/plugin.h>

namespace {
constexpr ferry_plugin_info_t kInfo = {2, 0, "wrong_abi", "2.0.0"};
}

extern "C" const struct ferry_plugin_info* ferry_plugin_info(void) { return &kInfo; }

// Reached only if the host skipped the version check.
extern "C" int ferry_plugin_init(const ferry_host_api*, ferry_registrar*) { return FERRY_E_UNSUPPORTED_VERSION; }
