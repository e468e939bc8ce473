#pragma once
// The box as a user agent client: requests it originates itself (the service-control NOTIFY that
// tells a phone to restart), each in an RFC 3261 17.1.2 non-INVITE client transaction.
//
// Two layers: NonInviteClientTimers is the transaction's state machine with no clock at all (the
// caller says when a deadline was reached), so its timing is tested by stepping it; the
// ClientTransactions table drives it with asio timers, sends through the Wire and matches
// responses by branch, method and source address.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "sip/proxy.hpp"

namespace ve::sip {

// RFC 3261 17.1.2.2 (figure 6) without a clock. Times are offsets from the first send.
// Unreliable transport: Timer E retransmits at T1, doubling up to T2 (T2 steadily once a
// provisional arrived); Timer F gives up at 64*T1; after the final response Timer K (T4) absorbs
// retransmitted responses. Reliable: no Timer E, K is zero.
class NonInviteClientTimers {
 public:
  using ms = std::chrono::milliseconds;
  enum class State { Trying, Proceeding, Completed, Terminated };
  enum class Action { None, Retransmit, Timeout, Terminate };

  NonInviteClientTimers(ms t1, ms t2, ms t4, bool reliable);

  State state() const { return state_; }
  // When the next timer fires, as an offset from the first send; nullopt once terminated.
  std::optional<ms> next_deadline() const;
  // The clock reached next_deadline(): what the transaction does now.
  Action on_deadline();
  // A response with `status` arrived: true when it is the final response to report (the first
  // one); provisional responses and repeated finals return false.
  bool on_response(int status);
  int retransmissions() const { return retransmissions_; }

 private:
  ms t1_, t2_, t4_;
  bool reliable_;
  State state_ = State::Trying;
  ms interval_;
  std::optional<ms> timer_e_;
  ms timer_f_;
  std::optional<ms> timer_k_;
  ms now_{0};
  int retransmissions_ = 0;
};

// What became of one request.
struct ClientOutcome {
  bool answered = false;  // a final response came
  int status = 0;
  std::string reason;
  int retransmissions = 0;
  std::chrono::milliseconds waited{0};  // first send to the final response or the timeout
};

class ClientTransactions {
 public:
  using Done = std::function<void(const ClientOutcome&)>;
  ClientTransactions(boost::asio::io_context& io, Wire& wire, const ServerOptions& options);
  ~ClientTransactions();
  ClientTransactions(const ClientTransactions&) = delete;
  ClientTransactions& operator=(const ClientTransactions&) = delete;

  // A branch nobody can guess (RFC 3261 magic cookie, 64 random bits): a forged response must
  // name it to complete the transaction.
  static std::string new_branch();
  // Sends `request` (its top Via carries `branch`) to `to` and keeps it until the first final
  // response or Timer F; `done` runs exactly once, from the io_context, never from start().
  void start(const std::string& branch, const std::string& method, const Destination& to, std::string request,
             Done done);
  // A response that came in: true when it belongs to a transaction here (branch and CSeq method
  // match, and it came from the address the request went to). Anything else is not ours.
  bool on_response(const Message& m, const Source& src);
  // Responses that named one of our branches but came from another host (dropped).
  std::uint64_t foreign_responses() const { return foreign_responses_; }
  std::size_t size() const { return transactions_.size(); }
  // Stopping: every open transaction ends now without its callback.
  void clear();

 private:
  struct Tx;
  void arm(const std::shared_ptr<Tx>& tx);
  void fire(const std::shared_ptr<Tx>& tx);
  void finish(const std::shared_ptr<Tx>& tx, ClientOutcome outcome);

  boost::asio::io_context& io_;
  Wire& wire_;
  ServerOptions options_;
  std::unordered_map<std::string, std::shared_ptr<Tx>> transactions_;  // branch|METHOD
  std::uint64_t foreign_responses_ = 0;
};

}  // namespace ve::sip
