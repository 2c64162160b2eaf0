// Fixture: a valid shared library that exports nothing Ferry-related.
// Loading it must fail with "no ferry_plugin_info", not crash.
extern "C" __attribute__((visibility("default"))) int not_a_ferry_plugin(void) { return 42; }
