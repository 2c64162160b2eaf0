#include "common/log_output.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>

namespace ferry {
namespace {

thread_local const LogFields* t_fields = nullptr;

// 2026-01-02T03:04:05.678Z
std::string utc_time(spdlog::log_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = std::time_t(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", int(ms % 1000));
  return buf;
}

}  // namespace

LogFields::LogFields(nlohmann::json fields) : fields_(std::move(fields)), outer_(t_fields) {
  if (outer_ != nullptr) {
    nlohmann::json merged = outer_->fields_;
    merged.update(fields_);
    fields_ = std::move(merged);
  }
  t_fields = this;
}

LogFields::~LogFields() { t_fields = outer_; }

const nlohmann::json* LogFields::current() { return t_fields != nullptr ? &t_fields->fields_ : nullptr; }

void JsonLogFormatter::format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) {
  const auto level = spdlog::level::to_string_view(msg.level);
  nlohmann::ordered_json line = {{"time", utc_time(msg.time)},
                                 {"level", std::string(level.data(), level.size())},
                                 {"message", std::string(msg.payload.data(), msg.payload.size())}};
  if (const nlohmann::json* fields = LogFields::current()) {
    for (const auto& [key, value] : fields->items()) {
      if (!line.contains(key)) line[key] = value;  // never over the three above
    }
  }
  const std::string text = line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  dest.append(text.data(), text.data() + text.size());
}

std::unique_ptr<spdlog::formatter> JsonLogFormatter::clone() const { return std::make_unique<JsonLogFormatter>(); }

Result<std::shared_ptr<ReopenableFileSink>> ReopenableFileSink::open(const std::filesystem::path& path) {
  std::FILE* f = std::fopen(path.c_str(), "ae");
  if (f == nullptr) return Status::Errno("log_file " + path.string());
  return std::shared_ptr<ReopenableFileSink>(new ReopenableFileSink(path, f));
}

ReopenableFileSink::~ReopenableFileSink() { std::fclose(file_); }

Status ReopenableFileSink::reopen() {
  std::lock_guard lock(mutex_);
  std::FILE* f = std::fopen(path_.c_str(), "ae");
  if (f == nullptr) return Status::Errno("log_file " + path_.string());
  std::fclose(file_);
  file_ = f;
  return Status::Ok();
}

void ReopenableFileSink::sink_it_(const spdlog::details::log_msg& msg) {
  spdlog::memory_buf_t buf;
  formatter_->format(msg, buf);
  std::fwrite(buf.data(), 1, buf.size(), file_);
  std::fflush(file_);
}

void ReopenableFileSink::flush_() { std::fflush(file_); }

Result<std::shared_ptr<ReopenableFileSink>> set_up_log(bool json, const std::filesystem::path& file) {
  std::shared_ptr<ReopenableFileSink> file_sink;
  spdlog::sink_ptr sink;
  if (!file.empty()) {
    auto opened = ReopenableFileSink::open(file);
    if (!opened.ok()) return opened.status();
    sink = file_sink = std::move(opened).value();
  } else {
    sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  }
  auto logger = std::make_shared<spdlog::logger>("ferryd", sink);
  if (json) logger->set_formatter(std::make_unique<JsonLogFormatter>());
  else logger->set_pattern(kTextLogPattern);
  logger->set_level(spdlog::default_logger()->level());
  spdlog::set_default_logger(std::move(logger));
  return file_sink;
}

}  // namespace ferry
