// SPDX-License-Identifier: Apache-2.0
#include "util/util.hpp"

#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <random>
#include <vector>

namespace sqlock::detail {

namespace {
std::mt19937_64& thread_rng() {
  thread_local std::mt19937_64 rng{[] {
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  }()};
  return rng;
}
}  // namespace

std::string random_hex(std::size_t bytes) {
  // Nonces must not repeat across processes started at the same instant, which a time-seeded
  // generator cannot promise: read the OS entropy source. One getrandom(2) call (~0.5 us);
  // constructing a std::random_device per call cost ~60 us on a VM (CPUID traps), which was
  // most of the client's overhead per acquire in the benchmark.
  static constexpr char digits[] = "0123456789abcdef";
  std::vector<unsigned char> buf(bytes);
  std::size_t got = 0;
  while (got < bytes) {
    ssize_t n = getrandom(buf.data() + got, bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      // No getrandom (very old kernel): fall back to the generator seeded from random_device.
      std::uniform_int_distribution<int> d(0, 255);
      for (; got < bytes; ++got) buf[got] = static_cast<unsigned char>(d(thread_rng()));
      break;
    }
    got += static_cast<std::size_t>(n);
  }
  std::string out;
  out.reserve(bytes * 2);
  for (auto b : buf) {
    out += digits[b >> 4];
    out += digits[b & 0xf];
  }
  return out;
}

std::string default_owner() {
  std::array<char, 256> host{};
  if (gethostname(host.data(), host.size() - 1) != 0) host[0] = '\0';
  std::string h = host.data();
  if (h.empty()) h = "localhost";
  return h + ":" + std::to_string(getpid()) + ":" + random_hex(4);
}

std::chrono::milliseconds jitter(std::chrono::milliseconds lo, std::chrono::milliseconds hi) {
  if (hi <= lo) return lo;
  std::uniform_int_distribution<std::int64_t> d(lo.count(), hi.count());
  return std::chrono::milliseconds{d(thread_rng())};
}

bool valid_utf8(std::string_view s) noexcept {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (std::size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // Reject overlong forms, surrogates and code points past U+10FFFF.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
      return false;
    i += len;
  }
  return true;
}

namespace {
void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}
}  // namespace

std::string prefix_upper_bound(std::string_view prefix) {
  // Decode into code points, bump the last one that can be bumped, drop what follows it.
  std::vector<std::uint32_t> cps;
  for (std::size_t i = 0; i < prefix.size();) {
    auto c = static_cast<unsigned char>(prefix[i]);
    std::size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
    std::uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
    for (std::size_t k = 1; k < len && i + k < prefix.size(); ++k)
      cp = (cp << 6) | (static_cast<unsigned char>(prefix[i + k]) & 0x3f);
    cps.push_back(cp);
    i += len;
  }
  while (!cps.empty()) {
    std::uint32_t next = cps.back() + 1;
    if (next == 0xd800) next = 0xe000;  // skip surrogates
    if (next <= 0x10ffff) {
      cps.back() = next;
      std::string out;
      for (auto cp : cps) append_utf8(out, cp);
      return out;
    }
    cps.pop_back();
  }
  return {};
}

namespace {
// Length of the valid UTF-8 sequence at the start of s and its code point; 0 when invalid.
std::size_t utf8_sequence(std::string_view s, std::uint32_t& cp) {
  auto c = static_cast<unsigned char>(s[0]);
  std::size_t len = c < 0x80             ? 1
                    : (c & 0xe0) == 0xc0 ? 2
                    : (c & 0xf0) == 0xe0 ? 3
                    : (c & 0xf8) == 0xf0 ? 4
                                         : 0;
  if (len == 0 || len > s.size() || !valid_utf8(s.substr(0, len))) return 0;
  cp = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
  for (std::size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[k]) & 0x3f);
  return len;
}
}  // namespace

std::string printable(std::string_view text, std::size_t max_bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    std::uint32_t cp = 0;
    std::size_t len = utf8_sequence(text.substr(i), cp);
    if (i + std::max<std::size_t>(len, 1) > max_bytes) {
      out += "...";
      break;
    }
    if (len == 0) {  // not UTF-8: show the byte
      auto c = static_cast<unsigned char>(text[i]);
      out += "\\x";
      out += digits[c >> 4];
      out += digits[c & 0xf];
      ++i;
      continue;
    }
    if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp < 0x20 || cp == 0x7f) {
      out += "\\x";
      out += digits[cp >> 4];
      out += digits[cp & 0xf];
    } else if ((cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
               (cp >= 0x2066 && cp <= 0x2069)) {
      // C1 controls (0x9b is a CSI on some terminals) and bidi overrides reorder what follows.
      char buf[16];
      std::snprintf(buf, sizeof buf, "\\u{%04x}", static_cast<unsigned>(cp));
      out += buf;
    } else {
      out.append(text.substr(i, len));
    }
    i += len;
  }
  return out;
}

std::string quoted(std::string_view name) { return "'" + printable(name, 80) + "'"; }

}  // namespace sqlock::detail
