// SPDX-License-Identifier: Apache-2.0
// etcd's children at the computer (the children-at-the-computer example of etcd's lock
// documentation): patient children wait for the seat with lock(), impatient ones leave if
// try_lock() fails. sqlock::mutex is TimedLockable, so the standard lock adapters work.
//
// usage: children DATABASE_URL

#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <sqlock/sqlock.hpp>

using namespace std::chrono_literals;

namespace {
std::mutex out;
void say(const std::string& s) {
  std::lock_guard<std::mutex> lock(out);
  std::puts(s.c_str());
  std::fflush(stdout);
}

struct child {
  std::string name;
  std::string favourite_game;
  bool patient;
};

// Each child is a thread with its own sqlock::mutex on the shared name: the database decides.
bool wants_to_play(sqlock::client& computer, const child& c) {
  say(c.name + " wants to play");
  sqlock::mutex seat(computer, "computer", sqlock::lock_options{10s, true, c.name, {}});
  std::unique_lock<sqlock::mutex> lock(seat, std::defer_lock);
  if (c.patient) {
    lock.lock();
  } else if (!lock.try_lock()) {
    say("someone else is playing, " + c.name + " impatiently leaves");
    return false;
  }
  say(c.name + " is playing " + c.favourite_game + " (token " + std::to_string(seat.token()) + ")");
  std::this_thread::sleep_for(150ms);
  say(c.name + " is having fun");
  return true;
}  // unlock
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DATABASE_URL\n", argv[0]);
    return 64;
  }
  try {
    sqlock::client computer(argv[1]);
    computer.migrate();
    std::vector<child> kids{{"Alice", "Minecraft", true},
                            {"Bob", "Tetris", false},
                            {"Carol", "Portal", true},
                            {"Dave", "Doom", false}};
    std::vector<std::thread> threads;
    std::vector<char> played(kids.size(), 0);
    for (std::size_t i = 0; i < kids.size(); ++i) {
      threads.emplace_back([&, i] { played[i] = wants_to_play(computer, kids[i]); });
      if (i == 0) std::this_thread::sleep_for(50ms);  // Alice sits down first
    }
    for (auto& t : threads) t.join();
    say("time to eat");
    // Every patient child played; Bob and Dave arrived while the seat was taken.
    return played[0] && played[2] ? 0 : 1;
  } catch (const sqlock::error& e) {
    std::fprintf(stderr, "children: %s\n", e.what());
    return 1;
  }
}
