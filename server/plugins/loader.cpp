#include "plugins/loader.hpp"

#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>

#include "common/json_text.hpp"
#include "worker/channel.hpp"
#include "worker/spec.hpp"

namespace ferry {
namespace {

constexpr int kDescribeTimeoutMs = 10000;
constexpr int kDescribeEndMs = 2000;  // for its shutdown hook

// The file itself is at fault: tried again once it changes (is_passing).
Status refused_file(std::string why) { return Status(FERRY_E_BAD_REQUEST, std::move(why)); }

// What a describing worker prints or logs is thrown away: its plugin's init
// says it again where the plugin serves (ferryd, or its pool's workers),
// which logs it. Reads a bounded amount, so a flood cannot hold the wait;
// false at EOF.
bool discard_output(int fd) {
  char buf[4096];
  for (int i = 0; i < 64; ++i) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0) return false;
    if (n < 0) return true;  // EAGAIN: nothing more for now
  }
  return true;
}

// The description, or why the file was refused, from the worker's first
// message other than LOG.
Result<PluginDescription> parse_description(const channel::Header& h, const std::string& body) {
  if (h.type == channel::Type::failed) return refused_file(body.substr(0, 512));
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (h.type != channel::Type::ready || j.is_discarded()) return refused_file("the worker sent a malformed description");
  try {
    return PluginDescription{j.at("name").get<std::string>(), j.at("version").get<std::string>(),
                             j.at("functions").get<std::vector<std::string>>()};
  } catch (const nlohmann::json::exception&) {
    return refused_file("the worker sent a malformed description");
  }
}

// Waits for the worker's description or why it failed, draining its output
// pipes meanwhile (a full pipe would block it).
Result<PluginDescription> read_description(const SpawnedWorker& w) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kDescribeTimeoutMs);
  pollfd p[3] = {{w.channel, POLLIN, 0}, {w.out, POLLIN, 0}, {w.err, POLLIN, 0}};
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    const int ready = left.count() > 0 ? poll(p, 3, int(left.count())) : 0;
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return Status(FERRY_E_TIMEOUT, "the worker did not answer within 10 s");
    for (int k = 1; k <= 2; ++k) {
      if (p[k].revents != 0 && !discard_output(p[k].fd)) p[k].fd = -1;  // EOF: poll it no more
    }
    if (p[0].revents == 0) continue;
    channel::Header h;
    std::string body;
    const Result<channel::Received> got = channel::recv(w.channel, &h, &body, 1u << 20);
    if (got.ok() && *got == channel::Received::none) continue;
    if (!got.ok() || *got != channel::Received::message) return refused_file("the worker exited while loading it");
    if (h.type != channel::Type::log) return parse_description(h, body);
  }
}

FileStamp stamp_of(const std::filesystem::path& file) {
  struct stat st {};
  if (stat(file.c_str(), &st) != 0) return {};
  return FileStamp{std::int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec, std::uintmax_t(st.st_size),
                   std::uint64_t(st.st_ino)};
}

// Ends a worker that described its file: normally (its init gets its fini),
// or by a kill when it does not end in time.
void end_describing(Launcher& launcher, SpawnedWorker* w, const std::filesystem::path& file) {
  launcher.end(*w);
  SpawnedWorker* const one[] = {w};
  if (launcher.reap_within(one, kDescribeEndMs) > 0) {
    spdlog::warn("plugin {}: its describing worker did not end within {} ms (a slow shutdown hook?); killed",
                 file.string(), kDescribeEndMs);
  }
}

// Describes the private copy of a file, then opens it (thread executor) or
// only registers it (process executor).
Status load_copy(const config::Config& cfg, Launcher& launcher, const OpenOptions& open,
                 const std::filesystem::path& copy, Prepared* out) {
  sandbox::Spec probe = cfg.defaults.sandbox;
  probe.allow_weaker = true;  // describing needs no more than this kernel offers
  const config::SettingsMap settings = cfg.settings();
  Result<PluginDescription> d = describe_plugin(launcher, copy, probe, settings);
  if (!d.ok()) return d.status();
  const config::PluginConfig& pc = cfg.plugin(d->name);
  if (pc.executor == config::ExecutorKind::thread) {
    OpenOptions options = open;
    options.settings = &settings;
    return open_plugin(copy, options, out);
  }
  *out = described_plugin(copy, d->name, d->version, d->functions, pc.settings);
  return Status::Ok();
}

// Copies one file of plugin_dir and loads the copy.
Status prepare(const config::Config& cfg, Launcher& launcher, const OpenOptions& open, SnapshotStore& snapshots,
               const std::filesystem::path& source, Prepared* out) {
  Result<std::filesystem::path> copy = snapshots.copy(source);
  if (!copy.ok()) return copy.status();  // e.g. the file went away meanwhile, or the disk is full
  if (const Status st = load_copy(cfg, launcher, open, *copy, out); !st.ok()) {
    std::error_code ec;
    std::filesystem::remove(*copy, ec);
    return st;
  }
  out->plugin->source = source;
  out->plugin->snapshot = *copy;
  return Status::Ok();
}

bool unchanged(const KnownFile& k, const FileStamp& stamp, const config::Config& cfg) {
  if (!(k.stamp == stamp) || k.settings != settings_key(cfg, k.plugin)) return false;
  return k.plugin.empty() || cfg.plugin(k.plugin).executor == k.executor;
}

}  // namespace

std::string settings_key(const config::Config& cfg, const std::string& plugin) {
  if (!plugin.empty()) return cfg.plugin(plugin).settings;
  return json_text(nlohmann::json(cfg.settings()));
}

Result<SnapshotStore> SnapshotStore::create() {
  std::string templ = (std::filesystem::temp_directory_path() / "ferryd-plugins-XXXXXX").string();
  if (mkdtemp(templ.data()) == nullptr) return Status::Errno("mkdtemp " + templ);
  std::error_code ec;
  std::filesystem::permissions(templ, std::filesystem::perms(0755), ec);  // workers (another uid) read the copies
  if (ec) return Status::Error("chmod " + templ + ": " + ec.message());
  return SnapshotStore(templ);
}

Result<std::filesystem::path> SnapshotStore::copy(const std::filesystem::path& source) {
  namespace fs = std::filesystem;
  // Only safe bytes in the copy's name: it travels in the worker spec (JSON,
  // UTF-8) and in logs, whatever the file in plugin_dir is called.
  std::string stem = source.stem().string();
  for (char& c : stem) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') c = '_';
  }
  const fs::path out = dir_ / (stem + "." + std::to_string(++count_) + ".so");
  std::error_code ec;
  fs::copy_file(source, out, fs::copy_options::overwrite_existing, ec);
  if (!ec) fs::permissions(out, fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read, ec);
  if (ec) {
    fs::remove(out, ec);
    return Status::Error("cannot copy it: " + ec.message());
  }
  return out;
}

void SnapshotStore::remove_all() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

Result<PluginDescription> describe_plugin(Launcher& launcher, const std::filesystem::path& file,
                                          const sandbox::Spec& spec, const config::SettingsMap& settings) {
  WorkerSpec ws{file.string(), spec};
  ws.settings = settings;
  Result<SpawnedWorker> w = launcher.spawn(spec, encode_worker_spec(ws));
  if (!w.ok()) return w.status();
  Result<PluginDescription> d = read_description(*w);
  if (d.ok()) {
    end_describing(launcher, &w.value(), file);
  } else {
    launcher.kill_and_reap(&w.value());  // it failed (no init to end) or hangs
  }
  return d;
}

SyncResult sync_plugins(const config::Config& cfg, Launcher& launcher, SnapshotStore& snapshots,
                        const KnownFiles& known, const OpenOptions& open) {
  SyncResult out;
  const auto files = plugin_files(cfg.server.plugin_dir);
  for (const auto& file : files) {
    const FileStamp stamp = stamp_of(file);
    auto k = known.find(file);
    if (k != known.end() && unchanged(k->second, stamp, cfg)) {
      continue;  // a refused file is retried once it (or what it depends on) changes
    }
    Prepared p;
    if (const Status st = prepare(cfg, launcher, open, snapshots, file, &p); !st.ok()) {
      out.refused.emplace_back(file, st.message());
      out.seen_refused[file] = stamp;
      if (is_passing(st)) out.transient.insert(file);
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
