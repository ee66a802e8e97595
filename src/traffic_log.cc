#include "src/traffic_log.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace ftm {
namespace {

// Splits off the next "\r\n"- or "\n"-terminated line; false if none.
bool next_line(std::string_view* rest, std::string_view* line) {
  size_t nl = rest->find('\n');
  if (nl == std::string_view::npos) return false;
  *line = rest->substr(0, nl);
  if (!line->empty() && line->back() == '\r') line->remove_suffix(1);
  rest->remove_prefix(nl + 1);
  return true;
}

std::string_view token(std::string_view line, int n) {
  size_t pos = 0;
  for (int i = 0;; ++i) {
    while (pos < line.size() && line[pos] == ' ') ++pos;
    size_t end = line.find(' ', pos);
    if (end == std::string_view::npos) end = line.size();
    if (i == n) return line.substr(pos, end - pos);
    if (end == line.size()) return {};
    pos = end;
  }
}

uint64_t number(std::string_view s) {
  std::string t(s);
  return strtoull(t.c_str(), nullptr, 10);
}

// Length of the data block that follows a request line, or 0.
uint64_t request_data_len(std::string_view line) {
  std::string_view cmd = token(line, 0);
  if (cmd == "set" || cmd == "add" || cmd == "replace" || cmd == "append" ||
      cmd == "prepend" || cmd == "cas") {
    return number(token(line, 4)) + 2;
  }
  if (cmd == "ms") return number(token(line, 2)) + 2;
  return 0;
}

void skip(std::string_view* rest, uint64_t n) {
  rest->remove_prefix(n < rest->size() ? n : rest->size());
}

}  // namespace

void log_requests(int fd, std::string_view consumed) {
  std::string_view line;
  while (next_line(&consumed, &line)) {
    fprintf(stderr, "<%d %.*s\n", fd, static_cast<int>(line.size()), line.data());
    skip(&consumed, request_data_len(line));
  }
}

void log_replies(int fd, std::string_view replies) {
  std::string_view line;
  while (next_line(&replies, &line)) {
    std::string_view first = token(line, 0);
    if (first == "VALUE") {
      std::string_view key = token(line, 1);
      fprintf(stderr, ">%d sending key %.*s\n", fd, static_cast<int>(key.size()), key.data());
      skip(&replies, number(token(line, 3)) + 2);
    } else if (first == "VA") {
      fprintf(stderr, ">%d %.*s\n", fd, static_cast<int>(line.size()), line.data());
      skip(&replies, number(token(line, 1)) + 2);
    } else {
      fprintf(stderr, ">%d %.*s\n", fd, static_cast<int>(line.size()), line.data());
    }
  }
}

}  // namespace ftm
