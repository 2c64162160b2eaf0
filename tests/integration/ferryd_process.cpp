#include "ferryd_process.hpp"

#include "sandbox/sandbox.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string_view>

extern char** environ;

namespace ferry::test {
namespace {

// How long a polling wait goes on before the test fails: long enough for a
// sanitizer build on a loaded machine, since it only matters on failure.
constexpr std::int64_t kWaitCapMs = 20000;

std::filesystem::path make_temp_dir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "ferry-test-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

int decode_status(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  return WIFSIGNALED(st) ? -WTERMSIG(st) : -1000;
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Reads until EOF or 15 s pass; "ready\n" means ferryd is listening.
bool wait_ready(int fd) {
  std::string got;
  char buf[64];
  pollfd p{fd, POLLIN, 0};
  while (got.find("ready") == std::string::npos && poll(&p, 1, 15000) == 1) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, std::size_t(n));
  }
  return got.find("ready") != std::string::npos;
}

}  // namespace

std::string plugin_path(const std::string& name) {
  return std::string(FERRY_PLUGIN_OUTPUT_DIR) + "/" + name + ".so";
}
std::string fixture_path(const std::string& name) {
  return std::string(FERRY_FIXTURE_DIR) + "/" + name + ".so";
}
std::string ferry_cli_path() { return FERRY_CLI; }

FerrydProcess::FerrydProcess(const std::vector<std::string>& plugins, const std::string& extra_toml,
                             const std::string& server_toml)
    : dir_(make_temp_dir()), socket_((dir_ / "ferry.sock").string()) {
  // Sandboxed workers run as another user: they must reach their plugin.
  std::filesystem::permissions(dir_, std::filesystem::perms(0755));
  std::filesystem::create_directory(dir_ / "plugins");
  for (const auto& p : plugins) {
    std::filesystem::create_symlink(p, dir_ / "plugins" / std::filesystem::path(p).filename());
  }
  std::ofstream(dir_ / "server.toml") << "[server]\nsocket_path = \"ferry.sock\"\n"
                                      << "plugin_dir = \"plugins\"\nlog_level = \"debug\"\n"
                                      << server_toml << "\n" << extra_toml << "\n";
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 3);
  posix_spawn_file_actions_addopen(&fa, 2, (dir_ / "ferryd.log").c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  const std::string config = (dir_ / "server.toml").string();
  std::vector<std::string> args = {FERRYD, "--config", config, "--ready-fd", "3"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // ferryd's private copies of plugin files go under TMPDIR: keep them in
  // the test's directory, so they go with it even when ferryd is killed.
  std::vector<std::string> env_strings = {"TMPDIR=" + dir_.string()};
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::string_view(*e).rfind("TMPDIR=", 0) != 0) env_strings.emplace_back(*e);
  }
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  const int rc = posix_spawn(&pid_, FERRYD, &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  close(pipefd[1]);
  const bool ready = rc == 0 && wait_ready(pipefd[0]);
  close(pipefd[0]);
  if (!ready) {
    if (rc == 0) stop(SIGKILL);
    throw std::runtime_error("ferryd did not start:\n" + log());
  }
}

FerrydProcess::~FerrydProcess() {
  if (pid_ > 0) stop(SIGKILL);
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

int FerrydProcess::stop(int sig) {
  if (pid_ <= 0) return -1000;
  kill(pid_, sig);
  return wait();
}

int FerrydProcess::wait() {
  int st = 0;
  while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  return decode_status(st);
}

std::string FerrydProcess::log() const { return read_file(dir_ / "ferryd.log"); }

Captured run_command(const std::vector<std::string>& argv_in, const std::string& input) {
  const auto dir = make_temp_dir();
  std::ofstream(dir / "in", std::ios::binary) << input;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, (dir / "in").c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, (dir / "out").c_str(), O_WRONLY | O_CREAT, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, (dir / "err").c_str(), O_WRONLY | O_CREAT, 0644);
  std::vector<std::string> args = argv_in;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  Captured c{-1000, {}, {}};
  if (posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) == 0) {
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    c.status = decode_status(st);
  }
  posix_spawn_file_actions_destroy(&fa);
  c.out = read_file(dir / "out");
  c.err = read_file(dir / "err");
  std::filesystem::remove_all(dir);
  return c;
}

std::string header(std::uint32_t len, std::uint8_t type, std::uint64_t id) {
  std::string h(16, '\0');
  std::memcpy(h.data(), &len, 4);
  h[4] = char(type);
  std::memcpy(h.data() + 8, &id, 8);
  return h;
}

RawAnswer raw_exchange(const FerrydProcess& d, const std::string& bytes, bool wait_close) {
  RawAnswer a;
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, d.socket().c_str(), sizeof addr.sun_path - 1);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  // MSG_NOSIGNAL: a server that refused the connection must fail the check, not kill the test.
  if (!bytes.empty()) REQUIRE(send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == ssize_t(bytes.size()));
  unsigned char hdr[16];
  REQUIRE(recv(fd, hdr, sizeof hdr, MSG_WAITALL) == 16);
  std::uint32_t len;
  std::memcpy(&len, hdr, 4);
  a.body.assign(len, '\0');
  REQUIRE(recv(fd, a.body.data(), len, MSG_WAITALL) == ssize_t(len));
  a.type = hdr[4];
  if (a.type == 4 && len >= 2) {
    a.code = static_cast<unsigned char>(a.body[0]) | static_cast<unsigned char>(a.body[1]) << 8;
  }
  char extra;
  a.closed = wait_close && recv(fd, &extra, 1, 0) == 0;
  close(fd);
  return a;
}

std::unique_ptr<Client> connect(const FerrydProcess& d) {
  std::string err;
  auto c = Client::connect(d.socket(), &err);
  INFO(err);
  REQUIRE(c != nullptr);
  return c;
}

Reply must_call(Client& c, std::string_view fn, std::string_view args, std::uint32_t timeout_ms) {
  auto r = c.call(fn, args, timeout_ms);
  INFO(c.last_error());
  REQUIRE(r.has_value());
  return *r;
}

Reply reply_for(Client& c, std::uint64_t id) {
  auto r = c.read_reply();
  REQUIRE(r.has_value());
  CHECK(r->call_id == id);
  return *r;
}

nlohmann::json plugin_status(Client& c, const std::string& plugin) {
  auto r = must_call(c, "ferry.status", "[]");
  REQUIRE(r.code == FERRY_OK);
  const nlohmann::json doc = nlohmann::json::parse(r.data);
  for (const auto& p : doc["plugins"]) {
    if (p["name"] == plugin) return p;
  }
  return nullptr;
}

// ferryd's resident set, in KiB.
long rss_kb(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  FAIL("no VmRSS for ferryd");
  return 0;
}

double connections(Client& c) {
  const nlohmann::json m = nlohmann::json::parse(must_call(c, "ferry.metrics", R"(["json"])").data);
  for (const nlohmann::json& f : m) {
    if (f["name"] == "ferry_connections") return f["metrics"][0]["value"].get<double>();
  }
  FAIL("no ferry_connections metric");
  return -1;
}

nlohmann::json status_until(Client& c, const std::string& plugin,
                            const std::function<bool(const nlohmann::json&)>& pred, const char* what) {
  nlohmann::json st;
  const auto start = std::chrono::steady_clock::now();
  while (ms_since(start) < kWaitCapMs) {
    st = plugin_status(c, plugin);
    if (!st.is_null() && pred(st)) return st;
  }
  FAIL("never reached: " << what << "; last status of " << plugin << ": " << st.dump());
  return st;
}

void wait_until(const std::function<bool()>& done, const char* what) {
  const auto start = std::chrono::steady_clock::now();
  while (!done()) {
    if (ms_since(start) >= kWaitCapMs) FAIL("never reached within " << kWaitCapMs / 1000 << " s: " << what);
  }
}

std::int64_t ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t).count();
}

bool sandbox_available() {
  static const bool available = ferry::sandbox::probe().missing.empty();
  return available;
}

std::string plugin_toml(const std::string& name, const std::string& executor, int workers, const std::string& extra) {
  std::string toml = "[plugins." + name + "]\nexecutor = \"" + executor + "\"\nworkers = " + std::to_string(workers) +
                     "\n" + extra + (extra.empty() || extra.back() == '\n' ? "" : "\n");
  if (executor == "process" && !sandbox_available()) toml += "[plugins." + name + ".sandbox]\nenabled = false\n";
  return toml;
}

}  // namespace ferry::test
