// Text that came from a plugin or a worker, made fit for ferryd's log: no
// control characters (a terminal escape or a fake newline must not reach the
// operator's screen or forge a log line), and a bounded length. Pure
// functions: thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace ferry {

// Control characters (below 0x20, and DEL) replaced by '?'.
inline std::string printable(std::string s) {
  for (char& ch : s) {
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ch = '?';
  }
  return s;
}

// `s` if it has at most `max` bytes, else its first `max` bytes or fewer
// (never half a UTF-8 character) followed by " [cut]".
inline std::string cut_line(std::string_view s, std::size_t max) {
  if (s.size() <= max) return std::string(s);
  std::size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;  // s[n] continues a character
  return std::string(s.substr(0, n)) + " [cut]";
}

}  // namespace ferry
