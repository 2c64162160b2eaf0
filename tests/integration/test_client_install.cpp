// The C++ client as a user gets it: `cmake --install` into a fresh prefix,
// a program built against that prefix alone with find_package(Ferry) and
// Ferry::client, then run against a real ferryd.
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "ferryd_process.hpp"

using ferry::test::Captured;
using ferry::test::FerrydProcess;
using ferry::test::plugin_path;
using ferry::test::run_command;

namespace {

const std::filesystem::path kWork = std::filesystem::path(CLIENT_INSTALL_WORK_DIR);

void run_step(const char* what, const std::vector<std::string>& argv) {
  const Captured r = run_command(argv);
  INFO(what << ":\n" << r.out << r.err);
  REQUIRE(r.status == 0);
}

// Installs the sdk and client components, then configures and builds
// tests/sdk/client_app against the prefix; returns the program's path.
std::string build_client_app() {
  std::filesystem::remove_all(kWork);
  const std::string prefix = (kWork / "prefix").string(), build = (kWork / "build").string();
  for (const char* component : {"sdk", "client"})
    run_step("install", {CMAKE_COMMAND, "--install", FERRY_BUILD_DIR, "--prefix", prefix, "--component", component});
  // Only installed files: the client header must not need anything else.
  REQUIRE(std::filesystem::exists(kWork / "prefix/include/ferry/client.hpp"));
  REQUIRE_FALSE(std::filesystem::exists(kWork / "prefix/include/protocol"));
  run_step("configure", {CMAKE_COMMAND, "-S", CLIENT_APP_SOURCE_DIR, "-B", build, "-G", CMAKE_GENERATOR,
                         "-DCMAKE_MAKE_PROGRAM=" CMAKE_MAKE_PROGRAM, "-DCMAKE_CXX_COMPILER=" CMAKE_CXX_COMPILER,
                         "-DCMAKE_PREFIX_PATH=" + prefix, "-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF",
                         "-DCMAKE_EXE_LINKER_FLAGS=" SANITIZER_FLAGS});
  run_step("build", {CMAKE_COMMAND, "--build", build});
  return build + "/client_app";
}

}  // namespace

TEST_CASE("a program built against the installed client calls a running ferryd", "[client][install]") {
  const std::string app = build_client_app();
  FerrydProcess d({plugin_path("primes")});
  const Captured r = run_command({app, d.socket()});
  INFO(r.err << d.log());
  CHECK(r.status == 0);
  CHECK(r.out ==
        "112272535095293: true\n"
        "7: true\n8: false\n9: false\n11: true\n"
        "nope.nothing: unknown_function\n");
}
