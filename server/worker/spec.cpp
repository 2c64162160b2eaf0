#include "worker/spec.hpp"


#include <nlohmann/json.hpp>

#include "common/json_text.hpp"
#include "sandbox/fields.hpp"

namespace ferry {

std::string encode_worker_spec(const WorkerSpec& spec) {
  nlohmann::json j{{"plugin", spec.plugin_path}, {"max_call_depth", spec.max_call_depth}, {"settings", spec.settings}};
  for (const sandbox::SpecField& f : sandbox::kSpecFields) {
    if (f.flag) j[f.key] = spec.sandbox.*f.flag;
    if (f.number) j[f.key] = spec.sandbox.*f.number;
    if (f.paths) j[f.key] = spec.sandbox.*f.paths;
  }
  return json_text(j);
}

namespace {

void read_field(const nlohmann::json& j, const sandbox::SpecField& f, sandbox::Spec* out) {
  const nlohmann::json& v = j.at(std::string(f.key));
  if (f.flag) out->*f.flag = v.get<bool>();
  if (f.number) out->*f.number = v.get<std::uint64_t>();
  if (f.paths) out->*f.paths = v.get<std::vector<std::string>>();
}

}  // namespace

Result<WorkerSpec> decode_worker_spec(std::string_view json) {
  const auto j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status(FERRY_E_BAD_REQUEST, "worker spec: not a JSON object");
  WorkerSpec spec;
  try {
    spec.plugin_path = j.at("plugin").get<std::string>();
    spec.max_call_depth = j.value("max_call_depth", std::uint32_t(64));
    if (j.contains("settings")) j.at("settings").get_to(spec.settings);
    for (const sandbox::SpecField& f : sandbox::kSpecFields) read_field(j, f, &spec.sandbox);
  } catch (const nlohmann::json::exception& e) {
    return Status(FERRY_E_BAD_REQUEST, std::string("worker spec: ") + e.what());
  }
  return spec;
}

}  // namespace ferry
