// Fixture "wrong_abi": written by hand, without FERRY_PLUGIN, claiming ABI
// major 2. The host must refuse it from ferry_plugin_info alone and never
// call ferry_plugin_init.
#include <ferry/plugin.h>

extern "C" {
// "ferry_plugin_info" is also plugin.h's struct typedef: define the symbol
// under another C name (asm label), as FERRY_PLUGIN does.
FERRY_EXPORT const ferry_plugin_info* wrong_abi_info(void) __asm__("ferry_plugin_info");
FERRY_EXPORT int ferry_plugin_init(const ferry_host_api* api, ferry_registrar* reg);
}

namespace {
constexpr ferry_plugin_info kInfo = {2, 0, "wrong_abi", "2.0.0"};
}

const ferry_plugin_info* wrong_abi_info(void) { return &kInfo; }

// Reached only if the host skipped the version check.
int ferry_plugin_init(const ferry_host_api*, ferry_registrar*) { return FERRY_E_UNSUPPORTED_VERSION; }
