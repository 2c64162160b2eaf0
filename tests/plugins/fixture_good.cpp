// Fixture "good": a well-formed plugin with two trivial functions.
#include <string>

#include <ferry/plugin.hpp>

FERRY_PLUGIN("good", "1.0.0") {
  plugin.def("hello", [] { return std::string("world"); });
  plugin.def("add", [](int a, int b) { return a + b; });
}
