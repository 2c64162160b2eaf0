// Fixture: a second plugin named "good" (see fixture_good). Loaded next to it,
// the host must refuse this one as a duplicate and keep the first.
#include <string>

#include <ferry/plugin.hpp>

FERRY_PLUGIN("good", "1.0.0-duplicate") {
  plugin.def("hello", [] { return std::string("duplicate"); });
}
