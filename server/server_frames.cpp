// Server: frames in, replies out. Decodes the frames a connection has read,
// answers HELLO and PING, routes CALLs, handles CANCEL, and answers each call
// exactly once: with its result, or early on a deadline or cancellation.
#include "server.hpp"

#include <cstring>
#include <string>

#include "common/clock.hpp"
#include "server_conn.hpp"

namespace ferry {

using loop::Op;
using loop::pack;
using loop::Tag;

// A decoded frame handed from handle_frames to handle_frame.
struct FrameView {
  proto::Type type;
  std::uint64_t id;
  std::span<const std::uint8_t> body;
};

// Handles every whole frame at the start of `in` (which stays valid
// meanwhile); returns how many bytes they took. Stops once the connection
// is failed (c.closing).
std::size_t Server::handle_frames(Conn& c, std::span<const std::uint8_t> in) {
  std::size_t pos = 0;
  while (!c.closing) {
    proto::Frame f;
    std::size_t used = 0;
    std::string why;
    const proto::Parse p = proto::parse_frame(in.subspan(pos), cfg_.max_frame_bytes, &f, &used, &why);
    if (p == proto::Parse::need_more) break;
    if (p != proto::Parse::ok) {
      fail_connection(c, p == proto::Parse::too_large ? ProtocolError::too_large : ProtocolError::bad_header, why);
      break;
    }
    if (!handle_frame(c, FrameView{f.header.type, f.header.call_id, f.body})) break;
    pos += used;
  }
  return pos;
}

bool Server::handle_frame(Conn& c, const FrameView& f) {
  if (!c.hello) return handle_hello(c, f);
  switch (f.type) {
    case proto::Type::call: return handle_call(c, f.id, f.body);
    case proto::Type::cancel: return handle_cancel(c, f.id), true;
    case proto::Type::ping:
      proto::encode_pong(c.out, f.id, {reinterpret_cast<const char*>(f.body.data()), f.body.size()});
      queue_send(c);
      return true;
    default:
      fail_connection(c, ProtocolError::unexpected_frame,
                      "unexpected frame type " + std::to_string(int(f.type)) + " from a client");
      return false;
  }
}

// The first frame of a connection: HELLO, with a major version we speak.
bool Server::handle_hello(Conn& c, const FrameView& f) {
  proto::Hello h;
  std::string why;
  if (f.type != proto::Type::hello) return fail_connection(c, ProtocolError::bad_hello, "expected HELLO first"), false;
  if (!proto::decode_hello(f.body, &h, &why)) return fail_connection(c, ProtocolError::bad_hello, why), false;
  if (f.id != 0) return fail_connection(c, ProtocolError::bad_hello, "HELLO must have call id 0"), false;
  if (h.major != proto::kVersionMajor) {
    fail_connection(c, ProtocolError::unsupported_version,
                    "protocol " + std::to_string(h.major) + "." + std::to_string(h.minor) +
                        " is not supported; this server speaks 1." +
                        std::to_string(proto::kVersionMinor));
    return false;
  }
  proto::encode_hello(c.out, proto::Hello{proto::kVersionMajor, proto::kVersionMinor,
                                          cfg_.max_frame_bytes});
  c.hello = true;
  c.minor = h.minor;
  queue_send(c);
  return true;
}

bool Server::handle_call(Conn& c, std::uint64_t id, std::span<const std::uint8_t> body) {
  proto::Call call;
  std::string why;
  if (!proto::decode_call(body, &call, &why)) return fail_connection(c, ProtocolError::bad_call, why), false;
  if (id == 0) return fail_connection(c, ProtocolError::bad_call, "call id 0 is reserved"), false;
  if ((call.flags & proto::kCallPartials) != 0 && c.minor < 2) {
    // A client that said 1.0 or 1.1 would not understand a PARTIAL frame.
    fail_connection(c, ProtocolError::bad_call,
                    "CALL asks for partial results, which need protocol 1.2; this connection's HELLO said 1." +
                        std::to_string(c.minor));
    return false;
  }
  if (c.calls.count(id) != 0) {
    fail_connection(c, ProtocolError::duplicate_call, "call id " + std::to_string(id) + " is already in flight");
    return false;
  }
  const std::uint64_t token = calls_.add(c.slot, c.gen, id);
  Route route;
  auto now = router_.dispatch(CallRef{c.slot, c.gen, id, token}, call, &route);
  if (now) {
    calls_.release(token);
    Metrics::count(route.metrics != nullptr ? route.metrics : metrics_.unknown(), now->code);
    reply(c, id, now->code, now->data);
    return true;
  }
  c.calls.emplace(id, token);
  calls_.arm(token, route.deadline_ms, route.lane, route.metrics, route.admitted_ns);
  if (route.deadline_ms != 0 && (deadline_timer_ms_ == 0 || route.deadline_ms < deadline_timer_ms_)) {
    arm_deadline_timer();
  }
  return true;
}

// CANCEL: the call is answered `cancelled` now; a queued call never starts,
// a running one is flagged (thread) or its worker killed (process). A CANCEL
// for a call already answered is ignored: the reply crossed it.
void Server::handle_cancel(Conn& c, std::uint64_t id) {
  auto it = c.calls.find(id);
  if (it == c.calls.end()) return;
  const std::uint64_t token = it->second;
  if (CallTable::Entry* e = calls_.find(token)) abandon(token, *e, FERRY_E_CANCELLED, "cancelled by the client");
}

void Server::reply(Conn& c, std::uint64_t id, ferry_code code, std::string_view data) {
  if (code == FERRY_OK) proto::encode_result(c.out, id, data);
  else proto::encode_error(c.out, id, code, data);
  queue_send(c);
}

void Server::abandon(std::uint64_t token, CallTable::Entry& e, ferry_code why, std::string_view message) {
  if (e.answered) return;
  calls_.answer(e);
  if (e.metrics != nullptr) Metrics::count(e.metrics, why);
  if (Conn* c = lookup(e.slot, e.conn_gen)) {
    c->calls.erase(e.call_id);
    reply(*c, e.call_id, why, message);
  }
  router_.cancel(e.lane, CallRef{e.slot, e.conn_gen, e.call_id, token}, why);
}

// One timer, for the earliest deadline of a call still waiting for its reply.
void Server::arm_deadline_timer() {
  const std::int64_t next = calls_.next_deadline();
  if (next == 0 || (deadline_timer_ms_ != 0 && deadline_timer_ms_ <= next)) return;
  deadline_timer_ms_ = next;
  deadline_ts_ = loop::at_ms(next);
  ring_.timeout_at(&deadline_ts_, pack(Tag{Op::deadline, 0, 0}));
}

void Server::on_deadline() {
  const std::int64_t now = clock_.now_ms();
  if (deadline_timer_ms_ <= now) deadline_timer_ms_ = 0;  // else an older, later timer fired
  while (const std::uint64_t token = calls_.expired(now)) {
    CallTable::Entry* e = calls_.find(token);
    const std::int64_t late = now - e->deadline_ms;
    abandon(token, *e, FERRY_E_TIMEOUT, "deadline passed" + (late > 0 ? " (" + std::to_string(late) + " ms ago)" : std::string()));
  }
  arm_deadline_timer();
}

// Results from the executors: answered unless a deadline or CANCEL came first.
// A call's partial results come before its final completion, in order.
void Server::deliver(std::vector<Completion>& done) {
  for (Completion& d : done) {
    if (d.partial) {  // the call goes on: its one reply comes later
      deliver_partial(d);
      continue;
    }
    CallTable::Entry* e = calls_.find(d.ref.token);
    if (e == nullptr) continue;
    void* lane = e->lane;
    if (e->metrics != nullptr) Metrics::observe(e->metrics, e->admitted_ns, d.started_ns, d.finished_ns);
    if (!e->answered) {
      if (e->metrics != nullptr) Metrics::count(e->metrics, d.code);
      if (Conn* c = lookup(d.ref.slot, d.ref.gen)) {
        c->calls.erase(d.ref.call_id);
        reply(*c, d.ref.call_id, d.code, d.data);
      }
    }
    calls_.release(d.ref.token);
    router_.finished(lane);
  }
  done.clear();
}

}  // namespace ferry
