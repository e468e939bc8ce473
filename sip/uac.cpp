// Non-INVITE client transactions for requests the box originates (RFC 3261 17.1.2).
#include "sip/uac.hpp"

#include <openssl/rand.h>

#include <array>
#include <random>

#include <fmt/format.h>

#include "sip/registrar.hpp"
#include "ve/log.hpp"

namespace ve::sip {

namespace asio = boost::asio;
using std::chrono::milliseconds;

NonInviteClientTimers::NonInviteClientTimers(ms t1, ms t2, ms t4, bool reliable)
    : t1_(t1), t2_(t2), t4_(t4), reliable_(reliable), interval_(t1), timer_f_(64 * t1) {
  if (!reliable_) timer_e_ = t1_;
}

std::optional<NonInviteClientTimers::ms> NonInviteClientTimers::next_deadline() const {
  switch (state_) {
    case State::Trying:
    case State::Proceeding:
      // Timer F wins a tie with Timer E: no retransmission at the moment we give up.
      return timer_e_ && *timer_e_ < timer_f_ ? *timer_e_ : timer_f_;
    case State::Completed: return timer_k_;
    case State::Terminated: return std::nullopt;
  }
  return std::nullopt;
}

NonInviteClientTimers::Action NonInviteClientTimers::on_deadline() {
  const auto next = next_deadline();
  if (!next) return Action::None;
  now_ = *next;
  if (state_ == State::Completed) {
    state_ = State::Terminated;
    return Action::Terminate;
  }
  if (now_ >= timer_f_) {
    state_ = State::Terminated;
    return Action::Timeout;
  }
  // Timer E: Trying doubles up to T2, Proceeding stays at T2.
  interval_ = state_ == State::Trying ? std::min(interval_ * 2, t2_) : t2_;
  timer_e_ = now_ + interval_;
  ++retransmissions_;
  return Action::Retransmit;
}

bool NonInviteClientTimers::on_response(int status) {
  if (state_ != State::Trying && state_ != State::Proceeding) return false;
  if (status < 200) {
    state_ = State::Proceeding;
    return false;
  }
  state_ = State::Completed;
  timer_e_.reset();
  timer_k_ = now_ + (reliable_ ? ms(0) : t4_);
  return true;
}

struct ClientTransactions::Tx {
  explicit Tx(asio::io_context& io, NonInviteClientTimers t) : timers(t), timer(io) {}
  std::string key;
  Destination to;
  std::string request;
  NonInviteClientTimers timers;
  asio::steady_timer timer;
  std::chrono::steady_clock::time_point started;
  Done done;
  bool reported = false;
};

ClientTransactions::ClientTransactions(asio::io_context& io, Wire& wire, const ServerOptions& options)
    : io_(io), wire_(wire), options_(options) {}

ClientTransactions::~ClientTransactions() { clear(); }

std::string ClientTransactions::new_branch() {
  std::array<unsigned char, 8> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    // No entropy from OpenSSL: a per-call random_device value is still not guessable from outside.
    std::random_device rd;
    for (auto& b : bytes) b = static_cast<unsigned char>(rd());
  }
  std::string hex;
  for (auto b : bytes) hex += fmt::format("{:02x}", b);
  return "z9hG4bK-ve-uac-" + hex;
}

void ClientTransactions::start(const std::string& branch, const std::string& method, const Destination& to,
                               std::string request, Done done) {
  const bool reliable = to.transport == Transport::Tcp;
  auto tx = std::make_shared<Tx>(io_, NonInviteClientTimers(options_.t1, options_.t2, options_.t4, reliable));
  tx->key = branch + "|" + method;
  tx->to = to;
  tx->request = std::move(request);
  tx->started = std::chrono::steady_clock::now();
  tx->done = std::move(done);
  transactions_[tx->key] = tx;
  // Sent from the event loop, not from inside the caller: `done` never runs before start() returns.
  asio::post(io_, [this, weak = std::weak_ptr<Tx>(tx)] {
    auto t = weak.lock();
    if (!t) return;
    wire_.send(t->to, t->request);
    arm(t);
  });
}

void ClientTransactions::arm(const std::shared_ptr<Tx>& tx) {
  const auto deadline = tx->timers.next_deadline();
  if (!deadline) return;
  tx->timer.expires_at(tx->started + *deadline);
  tx->timer.async_wait([this, weak = std::weak_ptr<Tx>(tx)](const boost::system::error_code& ec) {
    auto t = weak.lock();
    if (ec || !t) return;
    fire(t);
  });
}

void ClientTransactions::fire(const std::shared_ptr<Tx>& tx) {
  switch (tx->timers.on_deadline()) {
    case NonInviteClientTimers::Action::Retransmit:
      wire_.send(tx->to, tx->request);
      arm(tx);
      return;
    case NonInviteClientTimers::Action::Timeout: {
      ClientOutcome o;
      o.retransmissions = tx->timers.retransmissions();
      o.waited = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - tx->started);
      finish(tx, std::move(o));
      transactions_.erase(tx->key);
      return;
    }
    case NonInviteClientTimers::Action::Terminate: transactions_.erase(tx->key); return;
    case NonInviteClientTimers::Action::None: return;
  }
}

void ClientTransactions::finish(const std::shared_ptr<Tx>& tx, ClientOutcome outcome) {
  if (tx->reported) return;
  tx->reported = true;
  if (auto done = std::move(tx->done)) done(outcome);
}

bool ClientTransactions::on_response(const Message& m, const Source& src) {
  if (m.is_request || transactions_.empty()) return false;
  const auto vias = via_values(m);
  if (vias.empty()) return false;
  auto top = parse_via(vias.front());
  auto cseq = parse_cseq(m.value(HeaderType::CSeq));
  if (!top || !cseq) return false;
  auto it = transactions_.find(std::string(top->branch()) + "|" + std::string(cseq->method));
  if (it == transactions_.end()) return false;
  auto tx = it->second;
  // Only the phone's flow may answer: a host on the voice VLAN that learnt the branch cannot
  // complete (or fake the outcome of) a transaction sent to another phone.
  const bool from_peer = src.transport == tx->to.transport && (src.ip == tx->to.ip || src.ip == tx->to.contact_ip);
  if (!from_peer) {
    ++foreign_responses_;
    ve::logger("sip")->warn("response {} for our {} from {}:{}, which is not where it went ({}): dropped", m.status,
                            cseq->method, src.ip, src.port, tx->to.ip);
    return true;  // ours to drop: the proxy has nothing to do with it
  }
  if (tx->timers.on_response(m.status)) {
    ClientOutcome o;
    o.answered = true;
    o.status = m.status;
    o.reason = std::string(m.reason);
    o.retransmissions = tx->timers.retransmissions();
    o.waited = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - tx->started);
    finish(tx, std::move(o));
    arm(tx);  // Timer K
  }
  return true;
}

void ClientTransactions::clear() {
  for (auto& [key, tx] : transactions_) {
    tx->done = nullptr;
    tx->timer.cancel();
  }
  transactions_.clear();
}

}  // namespace ve::sip
