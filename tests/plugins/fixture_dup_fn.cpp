// Fixture "dupfn": registers the short name "hello" twice. The host's
// register_fn refuses the second, so ferry_plugin_init fails (and logs why).
#include <string>

#include <ferry/plugin.hpp>

FERRY_PLUGIN("dupfn", "1.0.0") {
  plugin.def("hello", [] { return std::string("first"); });
  plugin.def("hello", [] { return std::string("second"); });
}
