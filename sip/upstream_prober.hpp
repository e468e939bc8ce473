#pragma once
// The SRST prober: an OPTIONS to each sip.upstream every probe_interval_s over its transport, as
// a small client transaction of its own (UDP retransmissions at T1 doubling, one Call-ID per
// upstream, CSeq counting up), with the answer window the issue asks for: the interval, at most
// 5 s, not the 32 s of a full non-INVITE transaction. Results go into the UpstreamMonitor.
//
// It sends through the proxy's Wire (the box's own listening sockets, so answers come back in
// through the transports) and takes the answers whose top Via carries its branch prefix.
#include <chrono>
#include <map>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "sip/upstream.hpp"

namespace ve::sip {

class UpstreamProber : public std::enable_shared_from_this<UpstreamProber> {
 public:
  using Now = std::function<std::chrono::system_clock::time_point()>;
  UpstreamProber(
      boost::asio::io_context& io, UpstreamMonitor& monitor, Wire& wire, std::chrono::milliseconds t1,
      Now now = [] { return std::chrono::system_clock::now(); });
  // Probes every upstream at once, then every probe_interval_s. Again after a new site file.
  void start();
  void stop();
  // A response to one of our probes is consumed here (true); anything else is left alone.
  bool on_response(const Message& m, const Source& src);
  static bool is_probe_branch(std::string_view branch);
  std::uint64_t probes_sent() const { return sent_; }

 private:
  struct Probe;
  void tick();
  void send_probe(std::size_t i);
  void retransmit(const std::string& branch);
  void timeout(const std::string& branch);

  boost::asio::io_context& io_;
  UpstreamMonitor& monitor_;
  Wire& wire_;
  std::chrono::milliseconds t1_;
  Now now_;
  boost::asio::steady_timer interval_;
  std::map<std::string, std::shared_ptr<Probe>> pending_;  // by branch
  std::string call_id_key_;
  std::uint32_t cseq_ = 0;
  std::uint64_t sent_ = 0;
  std::uint64_t generation_ = 0;  // bumped by start()/stop(): stale completions do nothing
  bool running_ = false;
};

}  // namespace ve::sip
