// TFTP read server on the io_context: one listening socket, then one object per transfer owning
// its own socket (the server's TID), block window and retransmit timer. No thread per transfer.
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include "provision/internal.hpp"
#include "ve/log.hpp"

namespace ve::provision {

namespace asio = boost::asio;
using asio::ip::udp;
using Clock = std::chrono::steady_clock;

namespace {

std::chrono::milliseconds elapsed_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
}

}  // namespace

class TftpTransfer : public std::enable_shared_from_this<TftpTransfer> {
 public:
  struct Setup {
    std::uint64_t id;
    udp::endpoint peer;
    Bytes payload;
    tftp::Negotiated negotiated;
    std::chrono::milliseconds retransmit_timeout;
    int max_retries;
    std::chrono::seconds max_lifetime;
    std::chrono::milliseconds first_ack_timeout;
    TransferRecord record;  // filled with what is known at the request
  };

  TftpTransfer(udp::socket socket, Setup setup, std::weak_ptr<TftpServer> server, std::shared_ptr<Shared> shared)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        setup_(std::move(setup)),
        server_(std::move(server)),
        shared_(std::move(shared)),
        started_(Clock::now()) {
    const auto size = setup_.payload->size();
    // The last block is always short, so a size that is a multiple of blksize ends with an empty one.
    total_blocks_ = size / setup_.negotiated.blksize + 1;
  }

  void start() {
    receive();
    if (!setup_.negotiated.oack.empty()) {
      awaiting_oack_ack_ = true;
      send_oack();
    } else {
      send_window();
    }
  }

  // Server shutdown: drop everything without reporting.
  void abort() {
    finished_ = true;
    timer_.cancel();
    boost::system::error_code bec;
    socket_.close(bec);
  }

 private:
  void receive() {
    socket_.async_receive(
        asio::buffer(buffer_),
        [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) { self->on_receive(ec, n); });
  }

  void on_receive(const boost::system::error_code& ec, std::size_t n) {
    if (finished_) return;
    if (ec) {
      // ICMP port unreachable on a connected socket: the client is gone.
      if (ec == asio::error::connection_refused) return finish(Outcome::Failed, "client-gone");
      if (ec == asio::error::operation_aborted) return;
      return finish(Outcome::Failed, "socket-error");
    }
    auto packet = tftp::decode(std::span<const std::byte>(buffer_.data(), n));
    if (!packet) {
      shared_->activity.bump(&Counters::tftp_malformed);
    } else if (const auto* ack = std::get_if<tftp::Ack>(&*packet)) {
      on_ack(ack->block);
      if (finished_) return;
    } else if (const auto* err = std::get_if<tftp::Error>(&*packet)) {
      client_error_ = err->message;
      return finish(Outcome::Failed, err->code == tftp::ErrorCode::OptionRefused ? "option-refused" : "client-error");
    } else {
      // DATA, OACK or a request on the transfer port: not part of a read.
      shared_->activity.bump(&Counters::tftp_malformed);
    }
    receive();
  }

  void on_ack(std::uint16_t wire_block) {
    if (awaiting_oack_ack_) {
      if (wire_block != 0) return;
      awaiting_oack_ack_ = false;
      acknowledged_ = true;
      retries_ = 0;
      send_window();
      return;
    }
    // Map the 16-bit block number onto the absolute block in [acked_, window_end_]; the window is
    // far smaller than 65536 so the match is unique across rollovers.
    const std::uint64_t offset = static_cast<std::uint16_t>(wire_block - static_cast<std::uint16_t>(acked_));
    const std::uint64_t block = acked_ + offset;
    // A duplicate or stale ACK never triggers a resend: only the timer does (no Sorcerer's Apprentice).
    if (block <= acked_ || block > window_end_) return;
    acked_ = block;
    acknowledged_ = true;
    retries_ = 0;
    if (acked_ >= total_blocks_) return finish(Outcome::Ok, "ok");
    // With windowsize > 1 an ACK inside the window means the client lost the rest: go on from it.
    send_window();
  }

  void send_oack() {
    const auto wire = tftp::encode(tftp::OptionAck{setup_.negotiated.oack});
    boost::system::error_code ec;
    socket_.send(asio::buffer(wire.data(), wire.size()), 0, ec);  // would_block = lost; the timer resends
    arm_timer();
  }

  void send_window() {
    const std::size_t blksize = setup_.negotiated.blksize;
    const auto& data = *setup_.payload;
    const std::uint64_t last = std::min<std::uint64_t>(acked_ + setup_.negotiated.windowsize, total_blocks_);
    for (std::uint64_t block = acked_ + 1; block <= last; ++block) {
      const std::size_t begin = static_cast<std::size_t>((block - 1) * blksize);
      const std::size_t length = std::min(blksize, data.size() - std::min(begin, data.size()));
      const auto header = tftp::data_header(static_cast<std::uint16_t>(block & 0xffff));
      const std::array<asio::const_buffer, 2> gather{asio::buffer(header), asio::buffer(data.data() + begin, length)};
      boost::system::error_code ec;
      socket_.send(gather, 0, ec);
      if (ec && ec != asio::error::would_block) {
        if (ec == asio::error::connection_refused) return finish(Outcome::Failed, "client-gone");
        break;
      }
      sent_bytes_ += length;
    }
    window_end_ = last;
    arm_timer();
  }

  // The deadline moves on every send, but the timer is only re-armed when it fires early: one
  // timerfd update per timeout period instead of one per block.
  void arm_timer() {
    const auto timeout = setup_.negotiated.timeout_s ? std::chrono::milliseconds(*setup_.negotiated.timeout_s * 1000)
                                                     : setup_.retransmit_timeout;
    deadline_ = Clock::now() + timeout;
    if (!timer_pending_) wait_for_deadline();
  }

  void wait_for_deadline() {
    timer_pending_ = true;
    timer_.expires_at(deadline_);
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      self->timer_pending_ = false;
      if (ec || self->finished_) return;
      if (self->past_lifetime()) {
        self->shared_->activity.bump(&Counters::tftp_lifetime_exceeded);
        return self->finish(Outcome::Failed, "lifetime");
      }
      if (Clock::now() < self->deadline_) return self->wait_for_deadline();
      self->on_timeout();
    });
  }

  // The timer fires at least once per timeout period, so this bounds every transfer's slot time.
  bool past_lifetime() const { return Clock::now() - started_ >= setup_.max_lifetime; }

  void on_timeout() {
    if (++retries_ > setup_.max_retries) return finish(Outcome::Failed, "timeout");
    // A client that never acknowledged anything (a spoofed source, a scanner) gets no more time.
    if (!acknowledged_ && Clock::now() - started_ >= setup_.first_ack_timeout)
      return finish(Outcome::Failed, "timeout");
    shared_->activity.bump(&Counters::tftp_retransmits);
    if (awaiting_oack_ack_)
      send_oack();
    else
      send_window();
  }

  void finish(Outcome outcome, const std::string& result) {
    if (finished_) return;
    finished_ = true;
    timer_.cancel();
    boost::system::error_code ignored;
    socket_.close(ignored);
    auto record = std::move(setup_.record);
    record.outcome = outcome;
    record.result = result;
    record.bytes =
        outcome == Outcome::Ok ? setup_.payload->size() : std::min<std::uint64_t>(sent_bytes_, setup_.payload->size());
    record.duration = elapsed_since(started_);
    const auto log = ve::logger("provision");
    if (outcome == Outcome::Ok) {
      log->debug("tftp {} sent {} to {} ({} B, {} ms)", record.mac ? record.mac->sep_name() : "-", record.file,
                 record.client_ip, record.bytes, record.duration.count());
    } else {
      log->warn("tftp {} transfer of {} to {} ended: {}{}{}", record.mac ? record.mac->sep_name() : "-", record.file,
                record.client_ip, result, client_error_.empty() ? "" : ": ", client_error_);
    }
    shared_->activity.record(std::move(record));
    if (auto server = server_.lock()) server->transfer_finished(setup_.id, setup_.peer.address());
  }

  udp::socket socket_;
  asio::steady_timer timer_;
  Setup setup_;
  std::weak_ptr<TftpServer> server_;
  std::shared_ptr<Shared> shared_;
  Clock::time_point started_;
  std::array<std::byte, 1024> buffer_{};
  std::uint64_t total_blocks_ = 0;
  std::uint64_t acked_ = 0;       // highest block the client acknowledged (0: none yet)
  std::uint64_t window_end_ = 0;  // highest block sent
  std::uint64_t sent_bytes_ = 0;
  Clock::time_point deadline_{};
  bool timer_pending_ = false;
  int retries_ = 0;
  bool awaiting_oack_ack_ = false;
  bool acknowledged_ = false;  // any valid ACK seen
  bool finished_ = false;
  std::string client_error_;
};

// ---------------------------------------------------------------- TftpServer

TftpServer::TftpServer(asio::io_context& io, TftpOptions options, std::shared_ptr<Shared> shared)
    : io_(io), options_(std::move(options)), shared_(std::move(shared)), socket_(io), park_timer_(io) {}

Result<void, std::string> TftpServer::start() {
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(options_.listen.host, ec);
  if (ec) return unexpected("tftp listen address " + options_.listen.host + ": " + ec.message());
  const udp::endpoint endpoint(address, options_.listen.port);
  socket_.open(endpoint.protocol(), ec);
  if (!ec) socket_.bind(endpoint, ec);
  if (ec) return unexpected("tftp listen " + options_.listen.to_string() + ": " + ec.message());
  port_ = socket_.local_endpoint(ec).port();
  stopped_ = false;
  receive();
  ve::logger("provision")->info("tftp listening on {}:{}", options_.listen.host, port_);
  return {};
}

void TftpServer::stop() {
  stopped_ = true;
  boost::system::error_code ignored;
  socket_.close(ignored);
  park_timer_.cancel();
  parked_.clear();
  for (auto& [id, transfer] : transfers_) transfer->abort();
  transfers_.clear();
  per_client_.clear();
  active_count_ = 0;
}

void TftpServer::receive() {
  socket_.async_receive_from(asio::buffer(buffer_), sender_,
                             [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
                               if (self->stopped_ || ec == asio::error::operation_aborted) return;
                               if (!ec)
                                 self->handle(std::span<const std::byte>(self->buffer_.data(), n), self->sender_);
                               self->receive();
                             });
}

bool TftpServer::warn_allowed() {
  const auto now = Clock::now();
  if (now - last_warn_ < std::chrono::seconds(1)) return false;
  last_warn_ = now;
  return true;
}

void TftpServer::reply_error(const udp::endpoint& to, tftp::ErrorCode code, std::string_view message) {
  const auto wire = tftp::encode(tftp::Error{code, std::string(message)});
  boost::system::error_code ignored;
  socket_.send_to(asio::buffer(wire.data(), wire.size()), to, 0, ignored);
}

void TftpServer::handle(std::span<const std::byte> datagram, const udp::endpoint& from) {
  const auto log = ve::logger("provision");
  auto packet = tftp::decode(datagram);
  if (!packet) {
    shared_->activity.bump(&Counters::tftp_malformed);
    log->debug("tftp malformed packet from {}: {}", from.address().to_string(), tftp::to_string(packet.error()));
    reply_error(from, tftp::ErrorCode::IllegalOperation, "Illegal TFTP operation");
    return;
  }
  const auto* request = std::get_if<tftp::Request>(&*packet);
  if (request == nullptr) {
    // DATA/ACK/ERROR/OACK to port 69 belong to no transfer here.
    shared_->activity.bump(&Counters::tftp_malformed);
    if (!std::holds_alternative<tftp::Error>(*packet))
      reply_error(from, tftp::ErrorCode::UnknownTransferId, "Unknown transfer ID");
    return;
  }
  shared_->activity.bump(&Counters::tftp_requests);
  if (request->write) {
    TransferRecord r;
    r.protocol = Protocol::Tftp;
    r.client_ip = from.address().to_string();
    const auto tree = shared_->tree();
    const auto who = shared_->activity.requester(tree->site(), r.client_ip);
    r.mac = shared_->activity.identify(tree->site(), who, r.client_ip, request->filename);
    r.verified = who.mac().has_value();
    r.file = request->filename.substr(0, kMaxRequestName);
    r.step = classify(r.file);
    r.outcome = Outcome::Failed;
    r.result = "refused";
    r.time = std::chrono::system_clock::now();
    log->warn("tftp write request for {} from {} refused", r.file, r.client_ip);
    reply_error(from, tftp::ErrorCode::AccessViolation, "Write not supported");
    shared_->activity.record(std::move(r));
    return;
  }
  handle_read(*request, from);
}

void TftpServer::handle_read(const tftp::Request& request, const udp::endpoint& from) {
  if (request.mode != tftp::Mode::Mail) {
    const auto tree = shared_->tree();
    const auto who = shared_->activity.requester(tree->site(), from.address().to_string());
    switch (Activity::gate(tree->site(), who, request.filename)) {
      case Gate::Open: break;
      case Gate::Wait: return park(request, from);
      case Gate::Refuse: return serve_read(request, from, true);
    }
  }
  serve_read(request, from, false);
}

void TftpServer::park(const tftp::Request& request, const udp::endpoint& from) {
  // The client retransmits its RRQ while it waits: one parked request per endpoint and file.
  for (const auto& p : parked_) {
    if (p.from == from && p.request.filename == request.filename) return;
  }
  if (parked_.size() >= kMaxParked) return serve_read(request, from, true);
  parked_.push_back(Parked{request, from, Clock::now() + shared_->lease_wait});
  if (park_timer_armed_) return;
  park_timer_armed_ = true;
  park_timer_.expires_after(std::chrono::milliseconds(100));
  park_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    self->park_timer_armed_ = false;
    if (ec || self->stopped_) return;
    self->check_parked();
  });
}

void TftpServer::check_parked() {
  const auto now = Clock::now();
  auto waiting = std::move(parked_);
  parked_.clear();
  const auto tree = shared_->tree();
  for (auto& p : waiting) {
    const auto who = shared_->activity.requester(tree->site(), p.from.address().to_string());
    const auto gate = Activity::gate(tree->site(), who, p.request.filename);
    if (gate == Gate::Wait && now < p.until) {
      parked_.push_back(std::move(p));
      continue;
    }
    serve_read(p.request, p.from, gate != Gate::Open);
  }
  if (!parked_.empty() && !park_timer_armed_) {
    park_timer_armed_ = true;
    park_timer_.expires_after(std::chrono::milliseconds(100));
    park_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      self->park_timer_armed_ = false;
      if (ec || self->stopped_) return;
      self->check_parked();
    });
  }
}

void TftpServer::serve_read(const tftp::Request& request, const udp::endpoint& from, bool refuse_config) {
  const auto log = ve::logger("provision");
  const auto tree = shared_->tree();
  const auto& site = tree->site();
  TransferRecord record;
  record.protocol = Protocol::Tftp;
  record.client_ip = from.address().to_string();
  record.file = request.filename.substr(0, kMaxRequestName);
  record.step = classify(record.file);
  const auto who = shared_->activity.requester(site, record.client_ip);
  record.mac = shared_->activity.identify(site, who, record.client_ip, record.file);
  record.verified = who.mac().has_value();
  record.time = std::chrono::system_clock::now();
  auto fail = [&](tftp::ErrorCode code, std::string_view message, Outcome outcome, std::string result) {
    reply_error(from, code, message);
    record.outcome = outcome;
    record.result = std::move(result);
    shared_->activity.record(std::move(record));
  };

  if (request.mode == tftp::Mode::Mail)
    return fail(tftp::ErrorCode::IllegalOperation, "Mail mode not supported", Outcome::Failed, "bad-mode");

  // The last quarter (by default) of the table is for the site's phones only.
  const bool phone = who.is_site_phone(site);
  const auto total_limit = static_cast<std::size_t>(phone ? options_.max_transfers
                                                          : std::max(0, options_.max_transfers - options_.reserved()));
  auto& client_count = per_client_[from.address()];
  if (transfers_.size() >= total_limit || client_count >= options_.max_per_client) {
    const bool total = transfers_.size() >= total_limit;
    if (client_count == 0) per_client_.erase(from.address());
    if (warn_allowed()) {
      log->warn("tftp limit hit: {} (active {}/{}{}, {} from {}/{}); refusing {}",
                total ? "total transfers" : "transfers per client", transfers_.size(), total_limit,
                phone ? "" : " for hosts that are not phones of the site", client_count, record.client_ip,
                options_.max_per_client, record.file);
    }
    return fail(tftp::ErrorCode::NotDefined, "Server busy, try again", Outcome::Failed, "busy");
  }
  if (client_count == 0) per_client_.erase(from.address());

  if (refuse_config) {
    // Exactly the answer for a file that does not exist: nothing tells the host the config is there.
    if (const auto owner = config_owner(request.filename); owner && tree->open(request.filename)) {
      shared_->activity.config_refused(site, Protocol::Tftp, *owner, record.client_ip, who, record.file);
      return fail(tftp::ErrorCode::FileNotFound, "File not found", Outcome::Failed, "config-refused");
    }
    // A config that does not exist: the ordinary not-found below, but never a phone event.
    record.mac = who.mac();
  }

  auto file = tree->open(request.filename);
  if (!file) {
    const auto how = outcome_of(file.error(), record.step);
    if (file.error().kind == LookupError::Kind::Refused) {
      log->warn("tftp refused {} from {}: {}", record.file, record.client_ip, file.error().reason);
      return fail(tftp::ErrorCode::AccessViolation, "Access violation", how.outcome, how.result);
    }
    log->debug("tftp {} not found for {} ({})", record.file, record.client_ip, file.error().reason);
    return fail(tftp::ErrorCode::FileNotFound, "File not found", how.outcome, how.result);
  }

  Bytes payload = file->bytes;
  if (request.mode == tftp::Mode::Netascii) {
    payload = shared_->netascii.get(file->bytes, shared_->activity);
    if (!payload) {
      shared_->activity.bump(&Counters::tftp_busy_memory);
      if (warn_allowed())
        log->warn("tftp netascii copies at their budget ({} B held); refusing {} to {}", shared_->netascii.live_bytes(),
                  record.file, record.client_ip);
      return fail(tftp::ErrorCode::NotDefined, "Server busy, try again", Outcome::Failed, "busy");
    }
  }
  auto negotiated = tftp::negotiate(request.options, payload->size(), options_.limits);
  if (!negotiated.ignored.empty()) {
    shared_->activity.bump(&Counters::tftp_options_ignored, negotiated.ignored.size());
    std::string list;
    for (const auto& i : negotiated.ignored) list += (list.empty() ? "" : "; ") + i;
    log->debug("tftp {} from {}: options ignored: {}", record.file, record.client_ip, list);
  }

  // A fresh socket is the transfer's TID; connecting it makes the kernel drop other senders.
  boost::system::error_code ec;
  udp::socket socket(io_);
  socket.open(from.protocol(), ec);
  const auto local = socket_.local_endpoint(ec);
  if (!ec) socket.bind(udp::endpoint(local.address(), 0), ec);
  if (!ec) socket.connect(from, ec);
  if (!ec) socket.non_blocking(true, ec);
  if (ec) {
    log->error("tftp cannot open a transfer socket for {}: {}", record.client_ip, ec.message());
    return fail(tftp::ErrorCode::NotDefined, "Server error", Outcome::Failed, "socket-error");
  }

  const std::uint64_t id = next_id_++;
  TftpTransfer::Setup setup{id,
                            from,
                            std::move(payload),
                            std::move(negotiated),
                            options_.retransmit_timeout,
                            options_.max_retries,
                            options_.max_lifetime,
                            options_.first_ack_timeout,
                            std::move(record)};
  auto transfer = std::make_shared<TftpTransfer>(std::move(socket), std::move(setup), weak_from_this(), shared_);
  transfers_.emplace(id, transfer);
  ++per_client_[from.address()];
  active_count_ = transfers_.size();
  transfer->start();
}

void TftpServer::transfer_finished(std::uint64_t id, const asio::ip::address& client) {
  // Called from inside the transfer; keep it alive until its handler returns.
  auto it = transfers_.find(id);
  if (it == transfers_.end()) return;
  auto keep = std::move(it->second);
  transfers_.erase(it);
  if (auto c = per_client_.find(client); c != per_client_.end() && --c->second <= 0) per_client_.erase(c);
  active_count_ = transfers_.size();
  asio::post(io_, [keep = std::move(keep)] {});
}

}  // namespace ve::provision
