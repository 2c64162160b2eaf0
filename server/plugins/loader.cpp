#include "plugins/loader.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <algorithm>
#include <atomic>
#include <spdlog/spdlog.h>

#include "worker/channel.hpp"
#include "worker/spawn.hpp"

namespace ferry {
namespace {

constexpr int kDescribeTimeoutMs = 10000;
constexpr const char* kNoAnswer = "the worker did not answer within 10 s";

// Waits for the worker's first message: its description or why it failed.
std::string read_description(int channel, PluginDescription* out) {
  pollfd p{channel, POLLIN, 0};
  if (poll(&p, 1, kDescribeTimeoutMs) != 1) return kNoAnswer;
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

std::atomic<std::uint64_t> g_snapshots{0};

// A private, read-only copy of `source`, readable by workers.
std::string snapshot(const std::filesystem::path& source, const std::filesystem::path& dir,
                     std::filesystem::path* out) {
  namespace fs = std::filesystem;
  *out = dir / (source.stem().string() + "." + std::to_string(++g_snapshots) + ".so");
  std::error_code ec;
  fs::copy_file(source, *out, fs::copy_options::overwrite_existing, ec);
  if (!ec) fs::permissions(*out, fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read, ec);
  if (ec) {
    fs::remove(*out, ec);
    return "cannot copy it: " + ec.message();
  }
  return {};
}

FileStamp stamp_of(const std::filesystem::path& file) {
  struct stat st {};
  if (stat(file.c_str(), &st) != 0) return {};
  return FileStamp{std::int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec, std::uintmax_t(st.st_size),
                   std::uint64_t(st.st_ino)};
}

// Describes, then opens (thread) or only registers (process) one file.
std::string prepare(const config::Config& cfg, const std::string& worker_path, const std::filesystem::path& source,
                    const std::filesystem::path& snapshot_dir, Prepared* out, bool* transient) {
  std::filesystem::path copy;
  *transient = false;
  if (std::string why = snapshot(source, snapshot_dir, &copy); !why.empty()) {
    *transient = true;  // e.g. the file went away meanwhile, or the disk is full
    return why;
  }
  sandbox::Spec probe = cfg.defaults.sandbox;
  probe.allow_weaker = true;  // describing needs no more than this kernel offers
  PluginDescription d;
  std::string why = describe_plugin(worker_path, copy, probe, &d, transient);
  if (why.empty() && cfg.plugin(d.name).executor == config::ExecutorKind::thread) {
    why = open_plugin(copy, out);
  } else if (why.empty()) {
    *out = described_plugin(copy, d.name, d.version, d.functions);
  }
  if (!why.empty()) {
    std::error_code ec;
    std::filesystem::remove(copy, ec);
    return why;
  }
  out->plugin->source = source;
  out->plugin->snapshot = copy;
  return {};
}

}  // namespace

std::string describe_plugin(const std::string& worker_path, const std::filesystem::path& file,
                            const sandbox::Spec& spec, PluginDescription* out, bool* transient) {
  SpawnedWorker w;
  std::string why = spawn_worker(worker_path, spec, &w);
  bool passing = !why.empty();
  if (why.empty()) {
    const int rc = channel::send(w.channel, channel::Header{channel::Type::spec},
                                 encode_worker_spec(file.string(), spec));
    why = rc == 0 ? read_description(w.channel, out) : "cannot reach the worker";
    passing = rc != 0 || why == kNoAnswer;
  }
  if (transient != nullptr) *transient = passing;
  finish_worker(w);
  return why;
}

SyncResult sync_plugins(const config::Config& cfg, const std::string& worker_path,
                        const std::filesystem::path& snapshot_dir, const KnownFiles& known) {
  SyncResult out;
  const auto files = plugin_files(cfg.server.plugin_dir);
  for (const auto& file : files) {
    const FileStamp stamp = stamp_of(file);
    auto k = known.find(file);
    if (k != known.end() && k->second.stamp == stamp &&
        (k->second.plugin.empty() || cfg.plugin(k->second.plugin).executor == k->second.executor)) {
      continue;  // unchanged (a refused file is retried once it changes)
    }
    Prepared p;
    bool transient = false;
    if (std::string why = prepare(cfg, worker_path, file, snapshot_dir, &p, &transient); !why.empty()) {
      spdlog::error("plugin {} refused: {}", file.string(), why);
      out.refused.emplace_back(file, why);
      out.seen_refused[file] = stamp;
      if (transient) out.transient.insert(file);
      continue;
    }
    out.ready.push_back(SyncResult::Ready{file, stamp, std::move(p)});
  }
  for (const auto& [file, _] : known) {
    if (std::find(files.begin(), files.end(), file) == files.end()) out.removed.push_back(file);
  }
  return out;
}

}  // namespace ferry
