#include "notify.hpp"

#include <spdlog/spdlog.h>

#include <cstring>

#ifdef FERRY_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace ferry {

void notify_ready() {
#ifdef FERRY_HAVE_SYSTEMD
  const int r = sd_notify(/*unset_environment=*/1, "READY=1");
  if (r < 0) spdlog::error("sd_notify(READY=1): {}", std::strerror(-r));
#endif
}

}  // namespace ferry
