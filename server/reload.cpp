#include "reload.hpp"


#include <sys/inotify.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <system_error>

#include "common/json_text.hpp"
#include "common/log_output.hpp"

namespace ferry {
namespace {
// Events closer together than this are one change (an editor's save, a cp).
constexpr std::int64_t kSettleMs = 100;

config::ExecutorKind kind_of(const Plugin& p) {
  return p.library.is_loaded() ? config::ExecutorKind::thread : config::ExecutorKind::process;
}
// A sync's report in words: "config unchanged; loaded demo 1.2.0; 1 plugin files refused".
std::string changes_text(const nlohmann::json& report, const std::string& config_file) {
  std::string text = config_file.empty() ? "config unchanged" : "config reloaded from " + config_file;
  for (const auto& p : report["loaded"]) text += "; loaded " + p["plugin"].get<std::string>() + " " + p["version"].get<std::string>();
  for (const auto& p : report["removed"]) text += "; removed " + p["plugin"].get<std::string>();
  if (!report["refused"].empty()) text += "; " + std::to_string(report["refused"].size()) + " plugin files refused";
  if (report["loaded"].empty() && report["removed"].empty()) text += "; no plugin changed";
  return text;
}

}  // namespace

Result<std::unique_ptr<Reloader>> Reloader::create(std::shared_ptr<const config::Config> cfg, Launcher& launcher,
                                                    const Clock& clock, Registry& registry, loop::Reactor& reactor,
                                                    loop::CompletionQueue& loop_tasks, const OpenOptions& open) {
  Result<SnapshotStore> snapshots = SnapshotStore::create();
  if (!snapshots.ok()) return snapshots.status().with_context("plugin snapshots");
  try {
    return std::unique_ptr<Reloader>(new Reloader(std::move(cfg), launcher, clock, std::move(snapshots).value(),
                                                  registry, reactor, loop_tasks, open));
  } catch (const std::system_error& e) {  // the thread could not start
    return Status::Error(std::string("reloader thread: ") + e.what());
  }
}

Reloader::Reloader(std::shared_ptr<const config::Config> cfg, Launcher& launcher, const Clock& clock,
                   SnapshotStore snapshots, Registry& registry, loop::Reactor& reactor,
                   loop::CompletionQueue& loop_tasks, const OpenOptions& open)
    : cfg_(std::move(cfg)),
      launcher_(launcher),
      clock_(clock),
      registry_(registry),
      reactor_(reactor),
      loop_tasks_(loop_tasks),
      open_(open),
      id_(reactor.add(this)),
      snapshots_(std::move(snapshots)) {
  try {
    thread_ = std::thread([this] { run_worker(); });
  } catch (...) {
    reactor_.remove(id_);
    snapshots_.remove_all();
    throw;
  }
}

Reloader::~Reloader() {
  {
    std::lock_guard lock(mu_);
    quit_ = true;
  }
  cv_.notify_all();
  thread_.join();
  reactor_.remove(id_);
  if (inotify_fd_ >= 0) close(inotify_fd_);
  remove_snapshots();
}

void Reloader::remove_snapshots() { snapshots_.remove_all(); }

int Reloader::load_initial() {
  SyncResult sync = sync_plugins(*cfg_, launcher_, snapshots_, known_, open_);
  return apply_sync(sync, nullptr);
}

// Registry side of a sync. Returns how many plugins were installed; `report`
// (if given) lists what happened, for `ferry reload`.
int Reloader::apply_sync(SyncResult& sync, nlohmann::json* report) {
  nlohmann::json loaded = nlohmann::json::array(), refused = nlohmann::json::array(),
                 removed = nlohmann::json::array();
  int installed = 0;
  // Removals first: a plugin whose file was renamed (or replaced by a file
  // of another name) is gone before its new file is installed.
  for (const auto& file : sync.removed) {
    auto k = known_.find(file);
    if (k == known_.end()) continue;
    if (!k->second.plugin.empty()) {
      spdlog::info("plugin {} removed ({} deleted); calls in flight finish first", k->second.plugin, file.string());
      removed.push_back({{"plugin", k->second.plugin}, {"file", file.string()}});
      registry_.remove(k->second.plugin);
    }
    known_.erase(k);
  }
  for (auto& r : sync.ready) {
    const std::string name = r.prepared.plugin->name;
    const std::string version = r.prepared.plugin->version;
    const config::ExecutorKind kind = kind_of(*r.prepared.plugin);
    auto existing = registry_.find_plugin(name);
    const bool replace = existing != nullptr && existing->source == r.source;
    auto k = known_.find(r.source);
    const std::string previous = k == known_.end() ? std::string() : k->second.plugin;
    if (const Status st = registry_.install(std::move(r.prepared), replace); !st.ok()) {
      const std::string& why = st.message();
      note_plugin_refused(r.source, why, !previous.empty());
      // A name taken by another file: tried again at every sync, so it
      // joins once that file is gone.
      known_[r.source].stamp = FileStamp{};
      known_[r.source].refused = why;
      continue;
    }
    if (!previous.empty() && previous != name) registry_.remove(previous);
    known_[r.source] = KnownFile{r.stamp, name, "", kind, settings_key(*cfg_, name)};
    loaded.push_back({{"plugin", name}, {"version", version}, {"file", r.source.string()}});
    ++installed;
  }
  for (const auto& [file, why] : sync.refused) {
    note_plugin_refused(file, why, known_.count(file) != 0 && !known_[file].plugin.empty());
    // A file refused for its contents is tried again once it changes; one
    // that could not be examined (no worker could start, ...) at every sync.
    known_[file].stamp = sync.transient.count(file) != 0 ? FileStamp{} : sync.seen_refused[file];
    known_[file].refused = why;
    known_[file].settings = settings_key(*cfg_, known_[file].plugin);  // new settings: tried again
  }
  if (report != nullptr) {
    // What changed in this sync, then the state after it (a change the
    // watcher applied a moment earlier shows in the state only).
    (*report)["loaded"] = std::move(loaded);
    (*report)["removed"] = std::move(removed);
    nlohmann::json plugins = nlohmann::json::object();
    for (const auto& p : registry_.plugins()) plugins[p->name] = p->version;
    for (const auto& [file, k] : known_) {
      if (!k.refused.empty()) refused.push_back({{"file", file.string()}, {"why", k.refused}});
    }
    (*report)["plugins"] = std::move(plugins);
    (*report)["refused"] = std::move(refused);
  }
  return installed;
}

Status Reloader::watch() {
  inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd_ < 0) return Status::Errno("inotify_init1");
  const auto& dir = cfg_->server.plugin_dir;
  plugin_wd_ = inotify_add_watch(inotify_fd_, dir.c_str(),
                                 IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_ATTRIB);
  if (plugin_wd_ < 0) return Status::Errno("watching " + dir.string());
  if (!cfg_->file.empty()) {
    config_wd_ = inotify_add_watch(inotify_fd_, cfg_->file.parent_path().c_str(),
                                   IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_MASK_ADD);
    if (config_wd_ < 0) return Status::Errno("watching " + cfg_->file.parent_path().string());
  }
  reactor_.ring().poll_multishot(inotify_fd_, loop::Reactor::tag(id_, kInotify, 0));
  spdlog::info("watching {} and {} for changes", dir.string(), cfg_->file.string());
  return Status::Ok();
}

void Reloader::on_io(std::uint8_t sub, std::uint16_t, const io_uring_cqe& cqe) {
  if (sub == kSettle) {
    settle_armed_ = false;
    const bool config = settle_config_;
    settle_config_ = false;
    return request(ReloadKind::watch, config);
  }
  if (sub != kInotify || cqe.res < 0) return;
  if ((cqe.flags & IORING_CQE_F_MORE) == 0) {
    reactor_.ring().poll_multishot(inotify_fd_, loop::Reactor::tag(id_, kInotify, 0));
  }
  on_inotify();
}

void Reloader::on_inotify() {
  alignas(inotify_event) char buf[16 * (sizeof(inotify_event) + NAME_MAX + 1)];
  bool changed = false;
  const std::string config_name = cfg_->file.filename().string();
  ssize_t n;
  while ((n = read(inotify_fd_, buf, sizeof buf)) > 0) {
    for (char* p = buf; p < buf + n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(p);
      p += sizeof(inotify_event) + ev->len;
      const std::string_view name = ev->len > 0 ? std::string_view(ev->name) : std::string_view();
      if (ev->mask & IN_Q_OVERFLOW) {
        changed = settle_config_ = true;
        continue;
      }
      if (ev->wd == config_wd_ && name == config_name) changed = settle_config_ = true;
      if (ev->wd == plugin_wd_ && name.size() > 3 && name.substr(name.size() - 3) == ".so") changed = true;
    }
  }
  if (!changed || settle_armed_) return;
  settle_armed_ = true;
  const std::int64_t at = clock_.now_ms() + kSettleMs;
  settle_ts_ = loop::at_ms(at);
  reactor_.ring().timeout_at(&settle_ts_, loop::Reactor::tag(id_, kSettle, 0));
}

void Reloader::request(ReloadKind kind, bool config, std::optional<CallRef> reply) {
  want_ = true;
  want_kinds_ |= 1u << unsigned(kind);
  want_config_ = want_config_ || config;
  if (reply) next_replies_.push_back(*reply);
  if (!running_) start();
}

void Reloader::start() {
  running_ = true;
  const bool reread = want_config_;
  want_ = want_config_ = false;
  kinds_ = want_kinds_;
  want_kinds_ = 0;
  replies_ = std::move(next_replies_);
  next_replies_.clear();
  auto cfg = cfg_;
  auto known = known_;
  std::lock_guard lock(mu_);
  jobs_.push_back([this, reread, cfg, known = std::move(known)] {
    auto out = std::make_shared<Outcome>(sync_off_loop(reread, cfg, known));
    loop_tasks_.post([this, out] { finish(std::move(*out)); });
  });
  cv_.notify_one();
}

// The reloader's thread: re-reads the config (if asked) and syncs plugin_dir.
Reloader::Outcome Reloader::sync_off_loop(bool reread, const std::shared_ptr<const config::Config>& cfg,
                                          const KnownFiles& known) {
  Outcome out;
  try {
    const config::Config* use = cfg.get();
    if (reread) {
      auto parsed = config::parse_config_file(cfg->file);
      if (!parsed.ok()) return Outcome{nullptr, parsed.status().message(), {}};
      parsed->server.plugin_dir = cfg->server.plugin_dir;  // a new plugin_dir needs a restart
      out.cfg = std::make_shared<const config::Config>(std::move(parsed).value());
      use = out.cfg.get();
    }
    out.sync = sync_plugins(*use, launcher_, snapshots_, known, open_);
  } catch (const std::exception& e) {  // e.g. a filesystem error: report it, keep reloading possible
    return Outcome{nullptr, std::string("reload failed: ") + e.what(), {}};
  }
  return out;
}

void Reloader::run_off_loop(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    jobs_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void Reloader::run_worker() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return quit_ || !jobs_.empty(); });
    if (quit_) return;
    auto job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
    lock.lock();
  }
}

void Reloader::finish(Outcome out) {
  running_ = false;
  nlohmann::json report;
  ferry_code code = FERRY_OK;
  std::string message;
  if (!out.config_error.empty()) {
    code = FERRY_E_BAD_REQUEST;
    message = "config not reloaded, nothing changed: " + out.config_error;
    note_reload(ReloadResult::failed, message);
  } else {
    if (out.cfg) cfg_ = out.cfg;
    report["config"] = out.cfg ? "reloaded" : "unchanged";
    apply_sync(out.sync, &report);
    if (apply_) apply_(cfg_);
    message = json_text(report);
    note_reload(ReloadResult::ok, changes_text(report, out.cfg ? out.cfg->file.string() : std::string()));
  }
  for (const CallRef& ref : replies_) loop_tasks_.complete(Completion{ref, code, message});
  replies_.clear();
  if (want_) start();
}

// The one log line of a plugin file refused (a counter belongs here).
void Reloader::note_plugin_refused(const std::filesystem::path& file, const std::string& why, bool serving) const {
  const LogFields with(nlohmann::json{{"file", file.string()}});
  spdlog::error("plugin {} refused: {}{}", file.string(), why, serving ? "; the loaded version keeps serving" : "");
}

// The one log line of a reload's outcome, counted once per kind it served.
void Reloader::note_reload(ReloadResult result, const std::string& what) const {
  std::string kinds;
  for (const ReloadKind k : {ReloadKind::sighup, ReloadKind::call, ReloadKind::watch}) {
    if ((kinds_ & (1u << unsigned(k))) == 0) continue;
    reload_counts_[std::size_t(k) * 2 + std::size_t(result)].fetch_add(1, std::memory_order_relaxed);
    if (!kinds.empty()) kinds += '+';
    kinds += name(k);
  }
  const LogFields with({{"reload", kinds}, {"result", name(result)}});
  if (result == ReloadResult::ok) return spdlog::info("reload ({}): ok: {}", kinds, what);
  spdlog::error("reload ({}): failed: {}", kinds, what);
}

const char* name(ReloadKind kind) {
  static const char* const names[kReloadKindCount] = {"sighup", "call", "watch"};
  return names[int(kind)];
}

const char* name(ReloadResult result) { return result == ReloadResult::ok ? "ok" : "failed"; }

}  // namespace ferry
