// Live changes: plugin_dir and server.toml are watched with inotify on the
// loop; a change (after a short settle time), SIGHUP or a `ferry.reload` call
// starts a sync. The blocking part (reading the config, copying, describing
// and opening plugin files) runs on the reloader's own thread; the result is
// applied on the loop in one step: registry updated, then the router builds
// new lanes and retires old ones (calls in flight finish where they are).
// An invalid config changes nothing; a broken plugin file never replaces a
// working version. Loop thread only, except the private worker thread.
#pragma once

#include <linux/time_types.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "config/config.hpp"
#include "loop/completion.hpp"
#include "common/clock.hpp"
#include "common/status.hpp"
#include "loop/completion_queue.hpp"
#include "loop/reactor.hpp"
#include "plugins/loader.hpp"
#include "plugins/registry.hpp"

namespace ferry {

// What started a reload, and how it ended: fixed names that the log and
// the metrics (ferry_reloads_total{kind,result}) share.
enum class ReloadKind { sighup, call, watch };
enum class ReloadResult { ok, failed };
inline constexpr int kReloadKindCount = 3;
const char* name(ReloadKind kind);
const char* name(ReloadResult result);

class Reloader final : public loop::IoClient {
 public:
  // Applies a sync's outcome beyond the registry: router and server.
  using Apply = std::function<void(const std::shared_ptr<const config::Config>&)>;

  // Fails when the snapshot directory or the reloader's thread cannot be made.
  // Thread plugins are opened with `open` (its finalizer and log sink must
  // outlive every plugin; settings come from the config).
  static Result<std::unique_ptr<Reloader>> create(std::shared_ptr<const config::Config> cfg, Launcher& launcher,
                                                  const Clock& clock, Registry& registry, loop::Reactor& reactor,
                                                  loop::CompletionQueue& loop_tasks, const OpenOptions& open = {});
  ~Reloader() override;

  // Before the loop: loads plugin_dir (blocking). Returns how many plugins joined.
  int load_initial();
  void set_apply(Apply apply) { apply_ = std::move(apply); }
  // Watches plugin_dir and the config file, or says why it cannot.
  Status watch();
  // Re-reads the config (if `config`) and plugin_dir. `reply`: a ferry.reload
  // call, answered through the loop's sink with the outcome. Requests made
  // while a sync runs are merged into the next one; its one log line names
  // every kind merged into it.
  void request(ReloadKind kind, bool config, std::optional<CallRef> reply = std::nullopt);
  // Reloads done so far of this kind with this result (metrics). Thread-safe.
  std::uint64_t reloads(ReloadKind kind, ReloadResult result) const {
    return reload_counts_[std::size_t(kind) * 2 + std::size_t(result)].load(std::memory_order_relaxed);
  }
  // Runs `task` on the reloader's thread, after any sync already queued.
  void run_off_loop(std::function<void()> task);
  const std::shared_ptr<const config::Config>& config() const { return cfg_; }
  // Deletes the private copies of plugin files (also done by the destructor).
  void remove_snapshots();
  void on_io(std::uint8_t sub, std::uint16_t index, const io_uring_cqe& cqe) override;

 private:
  Reloader(std::shared_ptr<const config::Config> cfg, Launcher& launcher, const Clock& clock, SnapshotStore snapshots,
           Registry& registry, loop::Reactor& reactor, loop::CompletionQueue& loop_tasks, const OpenOptions& open);
  enum Sub : std::uint8_t { kInotify = 1, kSettle };
  struct Outcome {
    std::shared_ptr<const config::Config> cfg;  // null: the config was not (validly) re-read
    std::string config_error;
    SyncResult sync;
  };
  void start();
  Outcome sync_off_loop(bool reread, const std::shared_ptr<const config::Config>& cfg, const KnownFiles& known);
  void run_worker();
  int apply_sync(SyncResult& sync, nlohmann::json* report);
  void finish(Outcome out);
  void note_reload(ReloadResult result, const std::string& what) const;
  void note_plugin_refused(const std::filesystem::path& file, const std::string& why, bool serving) const;
  void on_inotify();

  std::shared_ptr<const config::Config> cfg_;
  Launcher& launcher_;
  const Clock& clock_;
  Registry& registry_;
  loop::Reactor& reactor_;
  loop::CompletionQueue& loop_tasks_;
  Apply apply_;
  OpenOptions open_;  // settings left null: sync_plugins takes them from the config
  std::uint32_t id_;
  SnapshotStore snapshots_;  // touched by the reloader's thread only (and by remove_snapshots at the end)
  KnownFiles known_;

  // Loop side: one sync at a time; requests meanwhile are merged.
  bool running_ = false;
  bool want_ = false, want_config_ = false;
  // Reloads by kind and result (ok, failed), for metrics; atomic, so any thread may read them.
  mutable std::array<std::atomic<std::uint64_t>, kReloadKindCount * 2> reload_counts_{};
  unsigned want_kinds_ = 0, kinds_ = 0;  // bits 1 << ReloadKind: of the next sync, of the running one
  std::vector<CallRef> replies_, next_replies_;
  // inotify
  int inotify_fd_ = -1;
  int plugin_wd_ = -1, config_wd_ = -1;
  bool settle_armed_ = false, settle_config_ = false;
  __kernel_timespec settle_ts_{};

  // Worker thread: one job at a time.
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool quit_ = false;
};

}  // namespace ferry
