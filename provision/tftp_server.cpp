// TFTP read server. The request socket (port 69) lives on the io_context with the rest of the
// daemon; every transfer gets its own connected socket (its TID) and runs on one of a few worker
// threads, each a plain level-triggered epoll loop. Per block the worker does one recv per ACK and
// one send per window: sendmsg with UDP GSO (one trip through the stack for the whole window) or
// sendmmsg where GSO is refused, and no allocation. Retransmit deadlines are plain time points
// checked when the loop's nearest deadline passes, not a timer per transfer. What a finished
// transfer learnt goes back to the io_context thread (records, events, logs and the limits live
// there).
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <thread>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include "provision/internal.hpp"
#include "ve/log.hpp"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

namespace ve::provision {

namespace asio = boost::asio;
using asio::ip::udp;
using Clock = std::chrono::steady_clock;

namespace {

std::chrono::milliseconds elapsed_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
}

// The largest UDP payload one GSO send may carry, and its segment limit (UDP_MAX_SEGMENTS).
constexpr std::size_t kMaxGsoBytes = 65000;
constexpr std::size_t kMaxGsoSegments = 64;

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

}  // namespace

// What a worker hands back to the io_context thread when a transfer ends.
struct TftpFinished {
  std::uint64_t id;
  asio::ip::address client;
  TransferRecord record;
  std::string client_error;
};

class TftpTransfer {
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
    bool gso;
    TransferRecord record;  // filled with what is known at the request
  };

  TftpTransfer(Fd socket, Setup setup, std::shared_ptr<Shared> shared)
      : socket_(std::move(socket)), setup_(std::move(setup)), shared_(std::move(shared)), started_(Clock::now()) {
    const auto size = setup_.payload->size();
    // The last block is always short, so a size that is a multiple of blksize ends with an empty one.
    total_blocks_ = size / setup_.negotiated.blksize + 1;
    timeout_ = setup_.negotiated.timeout_s ? std::chrono::milliseconds(*setup_.negotiated.timeout_s * 1000)
                                           : setup_.retransmit_timeout;
    // Everything a window needs is sized once here: nothing is allocated per block.
    const std::size_t window = std::max<std::size_t>(1, setup_.negotiated.windowsize);
    headers_.resize(window);
    iov_.resize(window * 2);
    msgs_.resize(window);
    if (window > 1 && setup_.gso) {
      const std::size_t segment = setup_.negotiated.blksize + 4;
      gso_segments_ = std::min({window, kMaxGsoSegments, kMaxGsoBytes / segment});
      if (gso_segments_ >= 2) gso_buffer_.resize(gso_segments_ * segment);
    }
  }

  int fd() const { return socket_.get(); }
  bool finished() const { return finished_.has_value(); }
  // The earliest moment the worker must look at this transfer again.
  Clock::time_point wake_at() const { return std::min(deadline_, started_ + setup_.max_lifetime); }

  void start() {
    if (!setup_.negotiated.oack.empty()) {
      awaiting_oack_ack_ = true;
      send_oack();
    } else {
      send_window();
    }
  }

  void on_readable() {
    const auto n = ::recv(socket_.get(), buffer_.data(), buffer_.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      // ICMP port unreachable on a connected socket: the client is gone.
      if (errno == ECONNREFUSED) return finish(Outcome::Failed, "client-gone");
      return finish(Outcome::Failed, "socket-error");
    }
    auto packet = tftp::decode(std::span<const std::byte>(buffer_.data(), static_cast<std::size_t>(n)));
    if (!packet) {
      shared_->activity.bump(&Counters::tftp_malformed);
    } else if (const auto* ack = std::get_if<tftp::Ack>(&*packet)) {
      on_ack(ack->block);
    } else if (const auto* err = std::get_if<tftp::Error>(&*packet)) {
      client_error_ = err->message;
      finish(Outcome::Failed, err->code == tftp::ErrorCode::OptionRefused ? "option-refused" : "client-error");
    } else {
      // DATA, OACK or a request on the transfer port: not part of a read.
      shared_->activity.bump(&Counters::tftp_malformed);
    }
  }

  // Called when wake_at() has passed.
  void on_deadline(Clock::time_point now) {
    if (finished()) return;
    if (now - started_ >= setup_.max_lifetime) {
      shared_->activity.bump(&Counters::tftp_lifetime_exceeded);
      return finish(Outcome::Failed, "lifetime");
    }
    if (now < deadline_) return;
    if (++retries_ > setup_.max_retries) return finish(Outcome::Failed, "timeout");
    // A client that never acknowledged anything (a spoofed source, a scanner) gets no more time.
    if (!acknowledged_ && now - started_ >= setup_.first_ack_timeout) return finish(Outcome::Failed, "timeout");
    shared_->activity.bump(&Counters::tftp_retransmits);
    if (awaiting_oack_ack_)
      send_oack();
    else
      send_window();
  }

  void abandon(const char* why) { finish(Outcome::Failed, why); }

  // The end, for the io_context thread (once, after finished()).
  TftpFinished take_result() {
    auto record = std::move(setup_.record);
    record.outcome = finished_->first;
    record.result = finished_->second;
    record.bytes = record.outcome == Outcome::Ok ? setup_.payload->size()
                                                 : std::min<std::uint64_t>(sent_bytes_, setup_.payload->size());
    record.duration = elapsed_since(started_);
    return TftpFinished{setup_.id, setup_.peer.address(), std::move(record), std::move(client_error_)};
  }

 private:
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
    ::send(socket_.get(), wire.data(), wire.size(), MSG_DONTWAIT | MSG_NOSIGNAL);  // lost: the deadline resends
    deadline_ = Clock::now() + timeout_;
  }

  std::size_t block_length(std::uint64_t block) const {
    const std::size_t blksize = setup_.negotiated.blksize;
    const std::size_t size = setup_.payload->size();
    const std::size_t begin = std::min(static_cast<std::size_t>((block - 1) * blksize), size);
    return std::min(blksize, size - begin);
  }
  const std::byte* block_data(std::uint64_t block) const {
    const std::size_t begin = static_cast<std::size_t>((block - 1) * setup_.negotiated.blksize);
    return setup_.payload->data() + std::min(begin, setup_.payload->size());
  }

  // Blocks [first, last] in one sendmsg: the kernel cuts the buffer into blksize + 4 datagrams.
  // Returns how many blocks went out, or -1 with errno.
  long send_gso(std::uint64_t first, std::uint64_t last) {
    const std::size_t segment = setup_.negotiated.blksize + 4;
    std::size_t bytes = 0;
    for (std::uint64_t block = first; block <= last; ++block) {
      const auto header = tftp::data_header(static_cast<std::uint16_t>(block & 0xffff));
      const auto length = block_length(block);
      std::memcpy(gso_buffer_.data() + bytes, header.data(), header.size());
      std::memcpy(gso_buffer_.data() + bytes + 4, block_data(block), length);
      bytes += 4 + length;
    }
    iovec iov{gso_buffer_.data(), bytes};
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(std::uint16_t))> control{};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    auto* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_UDP;
    cmsg->cmsg_type = UDP_SEGMENT;
    cmsg->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
    const auto size16 = static_cast<std::uint16_t>(segment);
    std::memcpy(CMSG_DATA(cmsg), &size16, sizeof(size16));
    if (::sendmsg(socket_.get(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) return -1;
    return static_cast<long>(last - first + 1);
  }

  long send_mmsg(std::uint64_t first, std::uint64_t last) {
    const std::size_t count = static_cast<std::size_t>(last - first + 1);
    for (std::size_t i = 0; i < count; ++i) {
      const std::uint64_t block = first + i;
      headers_[i] = tftp::data_header(static_cast<std::uint16_t>(block & 0xffff));
      iov_[2 * i] = iovec{headers_[i].data(), headers_[i].size()};
      iov_[2 * i + 1] = iovec{const_cast<std::byte*>(block_data(block)), block_length(block)};
      msgs_[i] = mmsghdr{};
      msgs_[i].msg_hdr.msg_iov = &iov_[2 * i];
      msgs_[i].msg_hdr.msg_iovlen = 2;
    }
    std::size_t done = 0;
    while (done < count) {
      const int n = ::sendmmsg(socket_.get(), msgs_.data() + done, static_cast<unsigned>(count - done),
                               MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0) {
        if (done > 0 && errno != ECONNREFUSED) break;
        if (done == 0) return -1;
        break;
      }
      done += static_cast<std::size_t>(n);
    }
    return static_cast<long>(done);
  }

  void send_window() {
    const std::uint64_t last = std::min<std::uint64_t>(acked_ + setup_.negotiated.windowsize, total_blocks_);
    std::uint64_t block = acked_ + 1;
    while (block <= last) {
      const bool gso = gso_segments_ >= 2 && last > block;
      const std::uint64_t batch_last = gso ? std::min<std::uint64_t>(last, block + gso_segments_ - 1) : last;
      long sent = gso ? send_gso(block, batch_last) : send_mmsg(block, batch_last);
      if (sent < 0) {
        const int error = errno;
        if (error == ECONNREFUSED) return finish(Outcome::Failed, "client-gone");
        if (gso && error != EAGAIN && error != EWOULDBLOCK && error != ENOBUFS) {
          gso_segments_ = 0;  // refused by this kernel or device: sendmmsg from now on
          continue;
        }
        break;  // the socket's buffer is full: lost, the deadline resends
      }
      for (long i = 0; i < sent; ++i) sent_bytes_ += block_length(block + static_cast<std::uint64_t>(i));
      block += static_cast<std::uint64_t>(sent);
      if (block <= batch_last) break;  // part of the batch did not fit
    }
    window_end_ = last;
    deadline_ = Clock::now() + timeout_;
  }

  void finish(Outcome outcome, const char* result) {
    if (finished()) return;
    finished_.emplace(outcome, result);
  }

  Fd socket_;
  Setup setup_;
  std::shared_ptr<Shared> shared_;
  Clock::time_point started_;
  std::chrono::milliseconds timeout_{};
  std::array<std::byte, 1024> buffer_{};
  std::vector<std::array<std::byte, 4>> headers_;
  std::vector<iovec> iov_;
  std::vector<mmsghdr> msgs_;
  std::vector<std::byte> gso_buffer_;
  std::size_t gso_segments_ = 0;
  std::uint64_t total_blocks_ = 0;
  std::uint64_t acked_ = 0;       // highest block the client acknowledged (0: none yet)
  std::uint64_t window_end_ = 0;  // highest block sent
  std::uint64_t sent_bytes_ = 0;
  Clock::time_point deadline_ = Clock::time_point::max();
  int retries_ = 0;
  bool awaiting_oack_ack_ = false;
  bool acknowledged_ = false;  // any valid ACK seen
  std::optional<std::pair<Outcome, std::string>> finished_;
  std::string client_error_;
};

// One thread and its epoll set; owns the transfers given to it. Only add() and the destructor are
// called from other threads.
class TftpWorker {
 public:
  using Done = std::function<void(TftpFinished)>;

  explicit TftpWorker(Done done)
      : done_(std::move(done)),
        epoll_(::epoll_create1(EPOLL_CLOEXEC)),
        wake_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (epoll_.get() < 0 || wake_.get() < 0) throw std::system_error(errno, std::generic_category(), "tftp worker");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev) < 0)
      throw std::system_error(errno, std::generic_category(), "tftp worker epoll");
    thread_ = std::thread([this] { run(); });
  }

  // Stops the thread; transfers still running are dropped without a report (server shutdown).
  ~TftpWorker() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    poke();
    if (thread_.joinable()) thread_.join();
  }

  TftpWorker(const TftpWorker&) = delete;
  TftpWorker& operator=(const TftpWorker&) = delete;

  void add(std::unique_ptr<TftpTransfer> transfer) {
    {
      std::lock_guard lock(mutex_);
      inbox_.push_back(std::move(transfer));
    }
    poke();
  }

 private:
  void poke() {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(wake_.get(), &one, sizeof(one));
  }

  void run() {
    std::array<epoll_event, 64> events{};
    std::vector<std::unique_ptr<TftpTransfer>> incoming;
    while (true) {
      int timeout_ms = -1;
      if (!transfers_.empty()) {
        const auto wait = std::chrono::ceil<std::chrono::milliseconds>(next_wake_ - Clock::now()).count();
        timeout_ms = static_cast<int>(std::clamp<long long>(wait, 0, 60000));
      }
      const int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), timeout_ms);
      if (n < 0 && errno != EINTR) break;
      for (int i = 0; i < n; ++i) {
        auto* transfer = static_cast<TftpTransfer*>(events[static_cast<std::size_t>(i)].data.ptr);
        if (transfer == nullptr) {
          std::uint64_t count = 0;
          [[maybe_unused]] const auto r = ::read(wake_.get(), &count, sizeof(count));
          std::lock_guard lock(mutex_);
          if (stopping_) return;
          incoming.swap(inbox_);
          continue;
        }
        transfer->on_readable();
        after(*transfer);
      }
      for (auto& t : incoming) start(std::move(t));
      incoming.clear();
      const auto now = Clock::now();
      if (now >= next_wake_) {
        next_wake_ = Clock::time_point::max();
        for (auto& [fd, t] : transfers_) {
          if (now >= t->wake_at()) t->on_deadline(now);
          if (!t->finished()) next_wake_ = std::min(next_wake_, t->wake_at());
        }
        for (auto& [fd, t] : transfers_) {
          if (t->finished()) dead_.push_back(fd);
        }
      }
      for (const int fd : dead_) retire(fd);
      dead_.clear();
    }
  }

  void start(std::unique_ptr<TftpTransfer> transfer) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = transfer.get();
    const int fd = transfer->fd();
    auto& slot = transfers_[fd];
    slot = std::move(transfer);
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) {
      slot->abandon("socket-error");  // cannot watch it: end it now, its record says so
    } else {
      slot->start();
    }
    after(*slot);
    if (!slot->finished()) next_wake_ = std::min(next_wake_, slot->wake_at());
  }

  // After any event: a finished transfer is retired at the end of the loop pass; a new deadline
  // earlier than the loop's next wake-up pulls it forward.
  void after(TftpTransfer& transfer) {
    if (transfer.finished()) {
      if (std::find(dead_.begin(), dead_.end(), transfer.fd()) == dead_.end()) dead_.push_back(transfer.fd());
    } else if (transfer.wake_at() < next_wake_) {
      next_wake_ = transfer.wake_at();
    }
  }

  void retire(int fd) {
    auto it = transfers_.find(fd);
    if (it == transfers_.end()) return;
    auto transfer = std::move(it->second);
    transfers_.erase(it);
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    if (!transfer->finished()) return;
    done_(transfer->take_result());
  }

  Done done_;
  Fd epoll_;
  Fd wake_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<TftpTransfer>> inbox_;  // guarded by mutex_
  bool stopping_ = false;                             // guarded by mutex_
  // Worker thread only:
  std::unordered_map<int, std::unique_ptr<TftpTransfer>> transfers_;  // by socket
  std::vector<int> dead_;
  Clock::time_point next_wake_ = Clock::time_point::max();
  std::thread thread_;  // last: started after everything above exists
};

// ---------------------------------------------------------------- TftpServer

TftpServer::TftpServer(asio::io_context& io, TftpOptions options, std::shared_ptr<Shared> shared)
    : io_(io), options_(std::move(options)), shared_(std::move(shared)), socket_(io), park_timer_(io) {}

TftpServer::~TftpServer() { workers_.clear(); }

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
  if (workers_.empty()) {
    const int cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const int count = options_.workers > 0 ? options_.workers : std::min(4 * cpus, 8);
    // The worker reports on the io_context thread; the server may be gone by then.
    auto done = [&io = io_, weak = weak_from_this(), shared = shared_](TftpFinished f) {
      asio::post(io, [weak, shared, f = std::move(f)]() mutable {
        const auto log = ve::logger("provision");
        const auto& r = f.record;
        if (r.outcome == Outcome::Ok) {
          log->debug("tftp {} sent {} to {} ({} B, {} ms)", r.mac ? r.mac->sep_name() : "-", r.file, r.client_ip,
                     r.bytes, r.duration.count());
        } else {
          log->warn("tftp {} transfer of {} to {} ended: {}{}{}", r.mac ? r.mac->sep_name() : "-", r.file, r.client_ip,
                    r.result, f.client_error.empty() ? "" : ": ", f.client_error);
        }
        // Its slot first, then its record: whoever sees the transfer counted as done (tftp_ok and
        // the events) also sees it gone from the active ones (a test read them in between).
        if (auto server = weak.lock()) server->transfer_finished(f.id, f.client);
        shared->activity.record(std::move(f.record));
      });
    };
    try {
      for (int i = 0; i < count; ++i) workers_.push_back(std::make_unique<TftpWorker>(done));
    } catch (const std::exception& e) {
      workers_.clear();
      socket_.close(ec);
      return unexpected(std::string("tftp: ") + e.what());
    }
  }
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
  workers_.clear();  // joins them; their transfers end without a report
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
  arm_park_timer();
}

// Parked requests are looked at again every 100 ms until their lease arrives or they time out.
void TftpServer::arm_park_timer() {
  if (park_timer_armed_ || parked_.empty()) return;
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
  arm_park_timer();
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

  // Opened once, for the refusal below and the transfer alike: a phone's config is rendered on
  // request, and a name that is no generated file is looked up on disk (a refused request for a
  // config that does not exist used to walk the root twice).
  auto file = tree->open(request.filename);
  if (refuse_config) {
    // Exactly the answer for a file that does not exist: nothing tells the host the config is there.
    if (const auto owner = config_owner(request.filename); owner && file) {
      shared_->activity.config_refused(site, Protocol::Tftp, *owner, record.client_ip, who, record.file);
      return fail(tftp::ErrorCode::FileNotFound, "File not found", Outcome::Failed, "config-refused");
    }
    // A config that does not exist: the ordinary not-found below, but never a phone event.
    record.mac = who.mac();
  }

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
  Fd socket(::socket(from.protocol().family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  boost::system::error_code ec;
  const auto local = socket_.local_endpoint(ec);
  const udp::endpoint bind_to(local.address(), 0);
  if (socket.get() < 0 || ec || ::bind(socket.get(), bind_to.data(), static_cast<socklen_t>(bind_to.size())) < 0 ||
      ::connect(socket.get(), from.data(), static_cast<socklen_t>(from.size())) < 0) {
    const std::string why = ec ? ec.message() : std::strerror(errno);
    log->error("tftp cannot open a transfer socket for {}: {}", record.client_ip, why);
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
                            options_.gso,
                            std::move(record)};
  transfers_.emplace(id, from.address());
  ++per_client_[from.address()];
  active_count_ = transfers_.size();
  workers_[id % workers_.size()]->add(std::make_unique<TftpTransfer>(std::move(socket), std::move(setup), shared_));
}

void TftpServer::transfer_finished(std::uint64_t id, const asio::ip::address& client) {
  if (transfers_.erase(id) == 0) return;
  if (auto c = per_client_.find(client); c != per_client_.end() && --c->second <= 0) per_client_.erase(c);
  active_count_ = transfers_.size();
}

}  // namespace ve::provision
