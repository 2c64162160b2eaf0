// take_snapshot: what a scrape reads from the router, the server and the
// reloader, on the loop thread.
#include "metrics.hpp"
#include "reload.hpp"
#include "router.hpp"
#include "server.hpp"

namespace ferry {

Snapshot take_snapshot(const Router& router, const Server& server, const Reloader& reloader) {
  Snapshot s;
  s.plugins = router.gauges();
  s.connections = server.connections();
  for (int r = 0; r < kConnRefusalCount; ++r) {
    s.refused.push_back({{{"reason", name(ConnRefusal(r))}}, server.refused()[r]});
  }
  for (int k = 0; k < kProtocolErrorCount; ++k) {
    s.protocol_errors.push_back({{{"kind", name(ProtocolError(k))}}, server.protocol_errors()[k]});
  }
  for (int k = 0; k < kReloadKindCount; ++k) {
    for (const ReloadResult r : {ReloadResult::ok, ReloadResult::failed}) {
      s.reloads.push_back({{{"kind", name(ReloadKind(k))}, {"result", name(r)}}, reloader.reloads(ReloadKind(k), r)});
    }
  }
  return s;
}

}  // namespace ferry
