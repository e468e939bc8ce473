#include "daemon/control_stream.hpp"

#include <deque>

#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include "ve/log.hpp"

namespace ve::daemon {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;

namespace {

// One streaming connection. Lines are queued and written one at a time; the queue is bounded in
// bytes (chunks beyond it are refused, the end line always fits). A read stays pending the whole
// time: any line or EOF from the client stops the stream.
class StreamConnection final : public ControlStream, public std::enable_shared_from_this<StreamConnection> {
 public:
  StreamConnection(local::socket socket, std::function<void()> released)
      : socket_(std::move(socket)), released_(std::move(released)), input_(4096) {}
  ~StreamConnection() override {
    if (released_) released_();
  }

  bool write(std::string_view bytes) override {
    if (done_ || closed_) return false;
    const std::size_t cost = (bytes.size() + 2) / 3 * 4 + 16;
    if (queued_ + cost > kMaxQueuedBytes) return false;
    enqueue(nlohmann::json{{"chunk", base64_encode(bytes)}}.dump() + "\n");
    return true;
  }

  void finish(nlohmann::json summary) override {
    if (done_) return;
    done_ = true;
    stop_ = nullptr;
    if (closed_) return;
    enqueue(nlohmann::json{{"end", std::move(summary)}}.dump() + "\n");
  }

  bool closed() const override { return closed_ || done_; }

  void on_stop(std::function<void()> stop) override { stop_ = std::move(stop); }

  // The reply's first line, written before anything the handler queued; until then nothing is
  // written (the handler may stream synchronously).
  void send_first_line(std::string line, bool discard_queued) {
    if (discard_queued) {
      queue_.clear();
      queued_ = 0;
    }
    queued_ += line.size();
    queue_.push_front(std::move(line));
    held_ = false;
    if (!writing_) write_next();
  }

  void watch_client() {
    asio::async_read_until(socket_, input_, '\n',
                           [self = shared_from_this()](const boost::system::error_code&, std::size_t) {
                             // A line, EOF or an error: either way the client wants no more.
                             self->client_stopped();
                           });
  }

  void close_after_queue() {
    done_ = true;
    stop_ = nullptr;
    if (queue_.empty() && !writing_) shutdown();
  }

 private:
  void client_stopped() {
    if (closed_) return;
    auto stop = std::move(stop_);
    stop_ = nullptr;
    if (stop && !done_) stop();  // usually calls finish() with the summary
    if (!done_) {
      done_ = true;
      shutdown();
    }
  }

  void enqueue(std::string line) {
    queued_ += line.size();
    queue_.push_back(std::move(line));
    if (!writing_ && !held_) write_next();
  }

  void write_next() {
    if (queue_.empty()) {
      writing_ = false;
      if (done_) shutdown();
      return;
    }
    writing_ = true;
    asio::async_write(socket_, asio::buffer(queue_.front()),
                      [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                        self->queued_ -= self->queue_.front().size();
                        self->queue_.pop_front();
                        if (ec) {
                          self->writing_ = false;
                          self->queue_.clear();
                          self->queued_ = 0;
                          self->client_stopped();
                          self->shutdown();
                          return;
                        }
                        self->write_next();
                      });
  }

  void shutdown() {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ignored;
    socket_.shutdown(local::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  local::socket socket_;
  std::function<void()> released_;
  asio::streambuf input_;
  std::deque<std::string> queue_;
  std::size_t queued_ = 0;
  bool writing_ = false;
  bool held_ = true;
  bool done_ = false;
  bool closed_ = false;
  std::function<void()> stop_;
};

std::string error_line(const ControlError& e) {
  return nlohmann::json{{"ok", false}, {"error", {{"code", e.code}, {"message", e.message}}}}.dump() + "\n";
}

}  // namespace

void start_control_stream(local::socket socket, const StreamHandler& handler, const nlohmann::json& args,
                          std::function<void()> released) {
  auto conn = std::make_shared<StreamConnection>(std::move(socket), std::move(released));
  ControlResult header = unexpected(ControlError{"failed", "no result"});
  try {
    header = handler(args, conn);
  } catch (const std::exception& e) {
    ve::logger("control")->error("stream command failed: {}", e.what());
    header = unexpected(ControlError{"failed", std::string("internal error: ") + e.what()});
  }
  if (!header) {
    conn->on_stop(nullptr);
    conn->send_first_line(error_line(header.error()), true);
    conn->close_after_queue();
    return;
  }
  // The header goes first even if the handler already queued chunks: put it in front.
  conn->send_first_line(
      nlohmann::json{{"ok", true}, {"stream", true}, {"data", std::move(header.value())}}.dump() + "\n", false);
  conn->watch_client();
}

}  // namespace ve::daemon
