#include "plugins/registry.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>
#include <mutex>
#include <set>

#include "plugins/finalizer.hpp"
#include "plugins/invoke.hpp"

// What ferry_plugin_init registers into; lives only during init.
struct ferry_registrar {
  std::string plugin;
  std::vector<ferry::Function> functions;
  std::string error;  // first registration problem, if any
  std::string settings = "{}";
  std::string refusal;  // why init refused (init_error), if it said
  ferry_instance* instance = nullptr;
};

namespace ferry {
namespace {

bool valid_name(std::string_view s) {
  return !s.empty() && s.size() <= 100 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string version_text(std::uint32_t major, std::uint32_t minor) {
  return std::to_string(major) + "." + std::to_string(minor);
}

// A file that is not a usable plugin.
Status refused(std::string why) { return Status(FERRY_E_BAD_REQUEST, std::move(why)); }

// Held around every dlopen and dlclose of a plugin. The dynamic linker
// serialises them anyway (its own lock, process-wide like this one), so this
// costs nothing; it makes the order visible to ThreadSanitizer, which
// otherwise sees a new version's init write the addresses an unloaded
// version's fini wrote on another thread (the finalizer's) as a race.
std::mutex& dl_mutex() {
  static std::mutex mu;
  return mu;
}

// Opens the library and checks it is a Ferry plugin of our ABI major.
Status open(const std::filesystem::path& file, Plugin* p, const ferry_plugin_info_t** info) {
  namespace dll = boost::dll;
  try {
    std::lock_guard lock(dl_mutex());
    p->library.load(file, dll::load_mode::rtld_now | dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    return refused(std::string("cannot load: ") + e.what());
  }
  if (!p->library.has(FERRY_PLUGIN_INFO_SYMBOL) || !p->library.has(FERRY_PLUGIN_INIT_SYMBOL)) {
    return refused("not a Ferry plugin: it does not export ferry_plugin_info and ferry_plugin_init");
  }
  *info = p->library.get<const ferry_plugin_info_t*()>(FERRY_PLUGIN_INFO_SYMBOL)();
  if (*info == nullptr) return refused("ferry_plugin_info() returned null");
  if ((*info)->abi_major != FERRY_ABI_MAJOR) {
    return Status(FERRY_E_UNSUPPORTED_VERSION,
                  "built against plugin ABI " + version_text((*info)->abi_major, (*info)->abi_minor) +
                      ", this ferryd supports ABI " + version_text(FERRY_ABI_MAJOR, FERRY_ABI_MINOR) +
                      ": rebuild it against this SDK");
  }
  if ((*info)->name == nullptr || !valid_name((*info)->name)) {
    return refused("invalid plugin name (use letters, digits and _)");
  }
  if (std::string_view((*info)->name) == "ferry") return refused("plugin name 'ferry' is reserved");
  return Status::Ok();
}

}  // namespace

ferry_instance* registrar_instance(ferry_registrar* reg) { return reg->instance; }
std::string_view registrar_settings(const ferry_registrar* reg) { return reg->settings; }
void registrar_refuse(ferry_registrar* reg, std::string_view why) { reg->refusal.assign(why.substr(0, 4096)); }

int registrar_add(ferry_registrar* reg, const char* name, ferry_fn fn, void* user) {
  const std::string_view n = name != nullptr ? name : "";
  std::string problem;
  if (!valid_name(n)) problem = "invalid function name '" + std::string(n) + "'";
  const std::string full = reg->plugin + "." + std::string(n);
  for (const auto& f : reg->functions) {
    if (f.name == full) problem = "function '" + full + "' registered twice";
  }
  if (fn == nullptr) problem = "function '" + full + "' has a null entry point";
  if (!problem.empty()) {
    if (reg->error.empty()) reg->error = problem;
    return FERRY_E_BAD_REQUEST;
  }
  reg->functions.push_back(Function{full, fn, user, nullptr, 0});
  return 0;
}

std::vector<std::filesystem::path> plugin_files(const std::filesystem::path& dir) {
  std::error_code ec;
  std::set<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".so" && e.is_regular_file()) files.insert(std::filesystem::absolute(e.path()));
  }
  if (ec) spdlog::error("plugin_dir {}: {}", dir.string(), ec.message());
  return {files.begin(), files.end()};
}

namespace {

// What ends a version once its Plugin is gone, handed to the finalizer.
struct Ending {
  ferry_plugin_fini_fn fini;
  boost::dll::shared_library library;
  std::unique_ptr<ferry_instance> instance;  // valid until fini returned
  void run() {
    if (fini != nullptr) fini();
    {
      std::lock_guard lock(dl_mutex());
      library.unload();
    }
    instance.reset();
  }
};

}  // namespace

Plugin::~Plugin() {
  if (!snapshot.empty()) {
    std::error_code ec;
    std::filesystem::remove(snapshot, ec);
  }
  if (finalizer == nullptr || !library.is_loaded()) {
    if (fini != nullptr) fini();
    std::lock_guard lock(dl_mutex());
    library.unload();
    return;
  }
  auto ending = std::make_shared<Ending>(Ending{fini, std::move(library), std::move(instance)});
  finalizer->post(name + " " + version, [ending] { ending->run(); });
}

Status open_plugin(const std::filesystem::path& file, const OpenOptions& options, Prepared* out) {
  static SpdlogSink spdlog_sink;  // stateless
  static SystemClock system_clock;  // stateless
  auto plugin = std::make_shared<Plugin>();
  plugin->path = std::filesystem::absolute(file);
  plugin->source = plugin->path;
  plugin->finalizer = options.finalizer;
  const ferry_plugin_info_t* info = nullptr;
  FERRY_RETURN_IF_ERROR(open(plugin->path, plugin.get(), &info));
  ferry_registrar reg;
  plugin->name = info->name;
  plugin->version = info->version != nullptr ? info->version : "";
  plugin->instance = std::make_unique<ferry_instance>(plugin->name, options.log != nullptr ? options.log : &spdlog_sink,
                                                     options.clock != nullptr ? options.clock : &system_clock);
  reg.plugin = plugin->name;
  reg.instance = plugin->instance.get();
  if (options.settings != nullptr) {
    if (auto it = options.settings->find(plugin->name); it != options.settings->end()) reg.settings = it->second;
  }
  auto init = plugin->library.get<int(const ferry_host_api*, ferry_registrar*)>(FERRY_PLUGIN_INIT_SYMBOL);
  const int rc = init(host_api(), &reg);
  if (rc == 0) {  // every successful init gets its fini, even if refused below
    plugin->settings = reg.settings;
    if (plugin->library.has(FERRY_PLUGIN_FINI_SYMBOL)) {
      plugin->fini = plugin->library.get<void()>(FERRY_PLUGIN_FINI_SYMBOL);
    }
  }
  if (!reg.error.empty()) return refused("registration failed: " + reg.error);
  if (rc != 0 && !reg.refusal.empty()) return refused("init refused: " + reg.refusal);
  if (rc != 0) return refused("ferry_plugin_init failed (returned " + std::to_string(rc) + ")");
  for (const auto& f : reg.functions) plugin->functions.push_back(f.name);
  std::sort(plugin->functions.begin(), plugin->functions.end());
  *out = Prepared{std::move(plugin), std::move(reg.functions)};
  return Status::Ok();
}

Prepared described_plugin(const std::filesystem::path& file, const std::string& name, const std::string& version,
                          const std::vector<std::string>& functions, const std::string& settings) {
  Prepared p{std::make_shared<Plugin>(), {}};
  p.plugin->settings = settings;
  p.plugin->path = std::filesystem::absolute(file);
  p.plugin->source = p.plugin->path;
  p.plugin->name = name;
  p.plugin->version = version;
  p.plugin->functions = functions;
  std::sort(p.plugin->functions.begin(), p.plugin->functions.end());
  for (const auto& f : p.plugin->functions) p.functions.push_back(Function{f, nullptr, nullptr, nullptr, 0});
  return p;
}

Status Registry::load(const std::filesystem::path& file, const OpenOptions& options) {
  Prepared p;
  Status st = open_plugin(file, options, &p);
  if (st.ok()) st = install(std::move(p), false);
  if (!st.ok()) spdlog::error("plugin {} refused: {}", file.string(), st.message());
  return st;
}

Status Registry::install(Prepared p, bool replace) {
  Plugin& plugin = *p.plugin;
  if (!valid_name(plugin.name)) return refused("invalid plugin name '" + plugin.name + "'");
  for (const auto& f : plugin.functions) {
    if (f.rfind(plugin.name + ".", 0) != 0) return refused("function '" + f + "' is not in plugin " + plugin.name);
  }
  FERRY_RETURN_IF_ERROR(admit(plugin, replace));
  plugin.loaded_at = utc_now();
  remove(plugin.name);
  const auto& names = plugin.functions;  // sorted
  for (auto& f : p.functions) {
    f.plugin = p.plugin;
    f.index = std::uint32_t(std::lower_bound(names.begin(), names.end(), f.name) - names.begin());
    auto fn = std::make_shared<const Function>(std::move(f));
    functions_.emplace(fn->name, std::move(fn));
  }
  plugins_.push_back(p.plugin);
  spdlog::info("plugin {} {} {} from {}: {} functions{}", plugin.name, plugin.version,
               replace ? "installed" : "loaded", plugin.source.string(), plugin.functions.size(),
               plugin.library.is_loaded() ? "" : ", run by its worker processes");
  return Status::Ok();
}

// A plugin may join only if neither its name nor any of its functions is
// taken; with `replace`, by a plugin of another name.
Status Registry::admit(const Plugin& p, bool replace) const {
  for (const auto& other : plugins_) {
    if (other->name == p.name && !replace) {
      return refused("duplicate plugin name '" + p.name + "' (already loaded from " + other->path.string() + ")");
    }
  }
  for (const auto& f : p.functions) {
    auto it = functions_.find(f);
    if (it != functions_.end() && !(replace && it->second->plugin->name == p.name)) {
      return refused("duplicate function name '" + f + "'");
    }
  }
  return Status::Ok();
}

std::shared_ptr<const Plugin> Registry::find_plugin(std::string_view name) const {
  for (const auto& p : plugins_) {
    if (p->name == name) return p;
  }
  return nullptr;
}

void Registry::remove(std::string_view name) {
  auto p = find_plugin(name);
  if (p == nullptr) return;
  for (const auto& f : p->functions) functions_.erase(f);
  std::erase(plugins_, p);
}

std::shared_ptr<const Function> Registry::find(std::string_view name) const {
  auto it = functions_.find(name);
  return it == functions_.end() ? nullptr : it->second;
}

void Registry::clear() {
  functions_.clear();
  plugins_.clear();
}

}  // namespace ferry
