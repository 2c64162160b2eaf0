#include "plugins/finalizer.hpp"

#include <spdlog/spdlog.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <system_error>
#include <utility>

namespace ferry {

struct Finalizer::State {
  std::mutex mu;
  std::condition_variable cv;       // work queued, or quit
  std::condition_variable done_cv;  // a task finished
  std::deque<std::pair<std::string, std::function<void()>>> tasks;
  std::string running;  // the version whose task runs now
  bool busy = false;
  bool quit = false;

  // The thread: tasks in order until quit and nothing is left.
  void run() {
    std::unique_lock lock(mu);
    while (true) {
      cv.wait(lock, [&] { return quit || !tasks.empty(); });
      if (tasks.empty()) return;
      auto [what, task] = std::move(tasks.front());
      tasks.pop_front();
      running = std::move(what);
      busy = true;
      lock.unlock();
      task();
      task = nullptr;  // what it holds (the library) goes here too
      lock.lock();
      busy = false;
      done_cv.notify_all();
    }
  }
};

Result<std::unique_ptr<Finalizer>> Finalizer::create() {
  try {
    return std::unique_ptr<Finalizer>(new Finalizer(std::make_shared<State>()));
  } catch (const std::system_error& e) {
    return Status::Error(std::string("the finalizer thread: ") + e.what());
  }
}

Finalizer::Finalizer(std::shared_ptr<State> state)
    : state_(std::move(state)), thread_([s = state_] { s->run(); }) {}

Finalizer::~Finalizer() {
  const bool idle = drain(kStopWait);
  {
    std::lock_guard lock(state_->mu);
    state_->quit = true;
  }
  state_->cv.notify_all();
  if (idle) {
    thread_.join();
  } else {
    thread_.detach();  // it holds its State: nothing of this object is touched
  }
}

void Finalizer::post(std::string what, std::function<void()> task) {
  {
    std::lock_guard lock(state_->mu);
    state_->tasks.emplace_back(std::move(what), std::move(task));
  }
  state_->cv.notify_one();
}

bool Finalizer::drain(std::chrono::milliseconds limit) {
  std::unique_lock lock(state_->mu);
  const bool idle = state_->done_cv.wait_for(
      lock, limit, [&] { return state_->tasks.empty() && !state_->busy; });
  if (!idle) {
    spdlog::error("plugin {}: its shutdown hook still runs after {} ms; {} more versions wait behind it",
                  state_->running, limit.count(), state_->tasks.size());
  }
  return idle;
}

}  // namespace ferry
