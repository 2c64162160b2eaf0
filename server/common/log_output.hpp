// Where ferryd's log goes and in what form ([server] log_format and
// log_file): text lines or JSON lines (one object per line, for journald or
// Loki), on stderr or appended to a file that SIGUSR1 reopens (logrotate).
// Every line ferryd writes, its own, its plugins' and its workers', passes
// the one default logger set up here. LogFields adds structured fields
// (plugin, pid, call_id, ...) to the JSON form of the lines logged on its
// thread while it lives. Thread-safe, as spdlog's loggers are.
#pragma once

#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>
#include <spdlog/formatter.h>
#include <spdlog/sinks/base_sink.h>

#include "common/status.hpp"

namespace ferry {

// The text form: "2026-01-02 03:04:05.678 warn message".
inline constexpr const char* kTextLogPattern = "%Y-%m-%d %H:%M:%S.%e %^%l%$ %v";

// Structured fields for the lines logged on this thread during its life;
// nested ones add to (and may override) the outer ones. Text lines do not
// show them: their message says the same in words.
class LogFields {
 public:
  explicit LogFields(nlohmann::json fields);
  ~LogFields();
  LogFields(const LogFields&) = delete;
  LogFields& operator=(const LogFields&) = delete;
  // The fields in force on this thread (null when none).
  static const nlohmann::json* current();

 private:
  nlohmann::json fields_;
  const LogFields* outer_;
};

// One JSON object per line: time (UTC, ms), level, message, then the
// LogFields in force. Any byte is escaped (invalid UTF-8 becomes U+FFFD).
class JsonLogFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::formatter> clone() const override;
};

// Appends to a file, flushed line by line (a crash loses nothing); reopen()
// starts a new file under the same path once logrotate moved the old one.
class ReopenableFileSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  static Result<std::shared_ptr<ReopenableFileSink>> open(const std::filesystem::path& path);
  ~ReopenableFileSink() override;
  // Opens the path anew (under the sink's lock: no line is lost or split);
  // on failure the old file stays in use.
  Status reopen();

 private:
  ReopenableFileSink(std::filesystem::path path, std::FILE* file) : path_(std::move(path)), file_(file) {}
  void sink_it_(const spdlog::details::log_msg& msg) override;
  void flush_() override;

  const std::filesystem::path path_;
  std::FILE* file_;
};

// Makes the default logger ("ferryd") write `json` or text lines to `file`
// (stderr when empty). Returns the file sink (null for stderr), for SIGUSR1.
// Call before other threads log.
Result<std::shared_ptr<ReopenableFileSink>> set_up_log(bool json, const std::filesystem::path& file);

}  // namespace ferry
