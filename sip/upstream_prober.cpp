// SRST OPTIONS prober (sip/upstream_prober.hpp).
#include "sip/upstream_prober.hpp"

#include <fmt/format.h>

#include "sip/digest.hpp"
#include "ve/log.hpp"

namespace ve::sip {

namespace asio = boost::asio;

namespace {
constexpr std::string_view kProbeBranch = "z9hG4bK-vp-";
}

struct UpstreamProber::Probe {
  explicit Probe(asio::io_context& io) : retransmit(io), timeout(io) {}
  std::size_t index = 0;
  std::string branch;
  std::string bytes;
  Destination to;
  std::chrono::steady_clock::time_point sent;
  std::chrono::milliseconds interval{0};
  asio::steady_timer retransmit;
  asio::steady_timer timeout;
};

UpstreamProber::UpstreamProber(asio::io_context& io, UpstreamMonitor& monitor, Wire& wire, std::chrono::milliseconds t1,
                               Now now)
    : io_(io), monitor_(monitor), wire_(wire), t1_(t1), now_(std::move(now)), interval_(io) {
  call_id_key_ = NonceSource().make(now_()).substr(16, 16);
}

bool UpstreamProber::is_probe_branch(std::string_view branch) {
  return branch.substr(0, kProbeBranch.size()) == kProbeBranch;
}

void UpstreamProber::start() {
  stop();
  if (monitor_.upstreams().empty()) return;
  running_ = true;
  tick();
}

void UpstreamProber::stop() {
  running_ = false;
  ++generation_;
  interval_.cancel();
  for (auto& [branch, p] : pending_) {
    p->retransmit.cancel();
    p->timeout.cancel();
  }
  pending_.clear();
}

void UpstreamProber::tick() {
  if (!running_) return;
  for (std::size_t i = 0; i < monitor_.upstreams().size(); ++i) send_probe(i);
  monitor_.tick(now_());
  interval_.expires_after(std::chrono::seconds(monitor_.survivability().probe_interval_s));
  interval_.async_wait([weak = weak_from_this(), gen = generation_](const boost::system::error_code& ec) {
    auto self = weak.lock();
    if (ec || !self || gen != self->generation_) return;
    self->tick();
  });
}

void UpstreamProber::send_probe(std::size_t i) {
  const auto& u = monitor_.upstreams()[i];
  // A probe of the previous round still open (interval shorter than its window cannot happen:
  // the window is at most the interval) is a miss now rather than never.
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second->index == i) {
      it->second->retransmit.cancel();
      it->second->timeout.cancel();
      it = pending_.erase(it);
      monitor_.missed(i, now_());
    } else {
      ++it;
    }
  }
  auto p = std::make_shared<Probe>(io_);
  p->index = i;
  p->to = u.destination();
  p->branch = fmt::format("{}{}-{:x}", kProbeBranch, call_id_key_.substr(0, 8), ++sent_);
  const std::string local = wire_.local_address(u.transport, u.config.host);
  const bool tcp = u.transport == Transport::Tcp;
  const std::string target = fmt::format("sip:{}:{}{}", u.config.host, u.config.port, tcp ? ";transport=tcp" : "");
  p->bytes = fmt::format(
      "OPTIONS {} SIP/2.0\r\n"
      "Via: SIP/2.0/{} {};branch={};rport\r\n"
      "Max-Forwards: 70\r\n"
      "From: <sip:voiceedge@{}>;tag={}\r\n"
      "To: <{}>\r\n"
      "Call-ID: probe-{}-{}@voiceedge\r\n"
      "CSeq: {} OPTIONS\r\n"
      "Accept: application/sdp\r\n"
      "User-Agent: voiceedge\r\n"
      "Content-Length: 0\r\n\r\n",
      target, tcp ? "TCP" : "UDP", local, p->branch, local, call_id_key_.substr(8, 8), target, call_id_key_, i,
      ++cseq_);
  p->sent = std::chrono::steady_clock::now();
  pending_[p->branch] = p;
  monitor_.probe_sent(i, now_());
  wire_.send(p->to, p->bytes);
  const auto gen = generation_;
  if (!tcp) {
    p->interval = t1_;
    p->retransmit.expires_after(p->interval);
    p->retransmit.async_wait([weak = weak_from_this(), gen, branch = p->branch](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (ec || !self || gen != self->generation_) return;
      self->retransmit(branch);
    });
  }
  p->timeout.expires_after(monitor_.probe_timeout());
  p->timeout.async_wait([weak = weak_from_this(), gen, branch = p->branch](const boost::system::error_code& ec) {
    auto self = weak.lock();
    if (ec || !self || gen != self->generation_) return;
    self->timeout(branch);
  });
}

void UpstreamProber::retransmit(const std::string& branch) {
  auto it = pending_.find(branch);
  if (it == pending_.end()) return;
  auto& p = *it->second;
  wire_.send(p.to, p.bytes);
  p.interval *= 2;
  p.retransmit.expires_after(p.interval);
  p.retransmit.async_wait([weak = weak_from_this(), gen = generation_, branch](const boost::system::error_code& ec) {
    auto self = weak.lock();
    if (ec || !self || gen != self->generation_) return;
    self->retransmit(branch);
  });
}

void UpstreamProber::timeout(const std::string& branch) {
  auto it = pending_.find(branch);
  if (it == pending_.end()) return;
  const auto i = it->second->index;
  it->second->retransmit.cancel();
  pending_.erase(it);
  if (i >= monitor_.upstreams().size()) return;
  ve::logger("sip")->debug("upstream {}: probe unanswered within {} ms", monitor_.upstreams()[i].config.name,
                           monitor_.probe_timeout().count());
  monitor_.missed(i, now_());
}

bool UpstreamProber::on_response(const Message& m, const Source& src) {
  if (m.is_request) return false;
  const auto vias = via_values(m);
  if (vias.empty()) return false;
  auto top = parse_via(vias.front());
  if (!top || !is_probe_branch(top->branch())) return false;
  auto it = pending_.find(std::string(top->branch()));
  if (it == pending_.end()) return true;  // ours, but late or a retransmission: dropped
  if (m.status < 200) return true;        // provisional: keep waiting
  auto p = it->second;
  // Only the upstream probed answers for it: a guess from the voice VLAN keeps nothing up.
  if (src.ip != p->to.ip) return true;
  pending_.erase(it);
  p->retransmit.cancel();
  p->timeout.cancel();
  const auto rtt = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - p->sent);
  if (p->index < monitor_.upstreams().size()) monitor_.answered(p->index, m.status, rtt, now_());
  return true;
}

}  // namespace ve::sip
