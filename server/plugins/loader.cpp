#include "plugins/loader.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "exec/channel.hpp"
#include "exec/spawn.hpp"

namespace ferry {
namespace {

constexpr int kDescribeTimeoutMs = 10000;

// Waits for the worker's first message: its description or why it failed.
std::string read_description(int channel, PluginDescription* out) {
  pollfd p{channel, POLLIN, 0};
  if (poll(&p, 1, kDescribeTimeoutMs) != 1) return "the worker did not answer within 10 s";
  channel::Header h;
  std::string body;
  const int rc = channel::recv(channel, &h, &body, 1u << 20);
  if (rc != 1) return "the worker exited while loading it";
  if (h.type == channel::Type::failed) return body.substr(0, 512);
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (h.type != channel::Type::ready || j.is_discarded()) return "the worker sent a malformed description";
  try {
    *out = PluginDescription{j.at("name").get<std::string>(), j.at("version").get<std::string>(),
                             j.at("functions").get<std::vector<std::string>>()};
  } catch (const nlohmann::json::exception&) {
    return "the worker sent a malformed description";
  }
  return {};
}

// Ends a describing worker and reaps it.
void finish_worker(SpawnedWorker& w) {
  if (w.pidfd >= 0) {
    syscall(SYS_pidfd_send_signal, w.pidfd, SIGKILL, nullptr, 0);
    siginfo_t si{};
    waitid(P_PIDFD, id_t(w.pidfd), &si, WEXITED);
    close(w.pidfd);
  }
  if (w.channel >= 0) close(w.channel);
}

// Describes, then loads (thread) or registers (process) one file.
bool add_plugin(const config::Config& cfg, const std::string& worker_path, const std::filesystem::path& file,
                Registry& registry) {
  sandbox::Spec probe = cfg.defaults.sandbox;
  probe.allow_weaker = true;  // describing needs no more than this kernel offers
  PluginDescription d;
  if (std::string why = describe_plugin(worker_path, file, probe, &d); !why.empty()) {
    spdlog::error("plugin {} refused: {}", file.string(), why);
    return false;
  }
  if (cfg.plugin(d.name).executor == config::ExecutorKind::thread) return registry.load(file).empty();
  return registry.add_described(file, d.name, d.version, d.functions).empty();
}

}  // namespace

std::string describe_plugin(const std::string& worker_path, const std::filesystem::path& file,
                            const sandbox::Spec& spec, PluginDescription* out) {
  SpawnedWorker w;
  std::string why = spawn_worker(worker_path, spec, &w);
  if (why.empty()) {
    const int rc = channel::send(w.channel, channel::Header{channel::Type::spec},
                                 encode_worker_spec(file.string(), spec));
    why = rc == 0 ? read_description(w.channel, out) : "cannot reach the worker";
  }
  finish_worker(w);
  return why;
}

int load_plugins(const config::Config& cfg, const std::string& worker_path, Registry& registry) {
  int added = 0;
  for (const auto& file : plugin_files(cfg.server.plugin_dir)) added += add_plugin(cfg, worker_path, file, registry);
  return added;
}

}  // namespace ferry
