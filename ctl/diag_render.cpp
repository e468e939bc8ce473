// voiceedgectl capture MAC [--seconds N] [--count N] [--write FILE|-], report MAC --output FILE,
// show diag. capture reads the daemon's stream (header, base64 pcapng chunks, end summary) and
// writes the pcapng itself; Ctrl-C asks the daemon to stop, so the summary still arrives.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>

#include <fmt/format.h>

#include "ctl/ctl_registry.hpp"
#include "ctl/ctl_util.hpp"
#include "ve/base64.hpp"
#include "ve/control_commands.hpp"

namespace ve::ctl {
namespace {

using nlohmann::json;

constexpr int kExitOk = 0;
constexpr int kExitCommandError = 1;
constexpr int kExitUnreachable = 2;

volatile std::sig_atomic_t g_interrupted = 0;  // NOLINT: a signal handler can only set a flag
extern "C" void on_interrupt(int) { g_interrupted = 1; }

int connect_socket(const std::string& path, std::string& error) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::strerror(errno);
    return -1;
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    ::close(fd);
    error = "socket path too long";
    return -1;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    error = std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

bool send_all(int fd, const std::string& data) {
  std::size_t sent = 0;
  while (sent < data.size()) {
    const auto n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<std::size_t>(n);
  }
  return true;
}

// Reads JSON lines from the daemon; `next` returns false on EOF/error. Waits in slices so that
// Ctrl-C is noticed.
class LineReader {
 public:
  explicit LineReader(int fd) : fd_(fd) {}
  enum class Got { Line, Eof, Interrupted, Timeout };
  Got next(std::string& line, int timeout_ms) {
    int waited = 0;
    while (true) {
      const auto nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return Got::Line;
      }
      if (g_interrupted != 0 && !interrupt_reported_) {
        interrupt_reported_ = true;
        return Got::Interrupted;
      }
      pollfd p{fd_, POLLIN, 0};
      const int rc = ::poll(&p, 1, 200);
      if (rc < 0 && errno != EINTR) return Got::Eof;
      if (rc <= 0) {
        waited += 200;
        if (timeout_ms > 0 && waited >= timeout_ms) return Got::Timeout;
        continue;
      }
      char buf[65536];
      const auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Got::Eof;
      buffer_.append(buf, static_cast<std::size_t>(n));
    }
  }

 private:
  int fd_;
  std::string buffer_;
  bool interrupt_reported_ = false;
};

std::string error_text(const json& body) {
  const auto& e = body.contains("error") ? body["error"] : json::object();
  return e.value("code", "error") + ": " + e.value("message", "");
}

int run_capture(const std::string& socket, const json& args, int timeout_s, bool as_json) {
  std::string target = args.value("write", "");
  if (target.empty()) {
    if (::isatty(STDOUT_FILENO) != 0) {
      std::cerr << "voiceedgectl: capture writes pcapng: give --write FILE, or --write - for a pipe\n";
      return kExitCommandError;
    }
    target = "-";
  }
  json request_args{{"phone", args.value("phone", "")}};
  for (const char* k : {"seconds", "count"}) {
    if (!args.contains(k)) continue;
    if (!args[k].is_number_unsigned() || args[k].get<std::uint64_t>() == 0) {
      std::cerr << "voiceedgectl: --" << k << " needs a positive whole number\n";
      return kExitCommandError;
    }
    request_args[k] = args[k];
  }
  std::string error;
  const int fd = connect_socket(socket, error);
  if (fd < 0) {
    std::cerr << "voiceedgectl: cannot reach voiceedged at " << socket << ": " << error << "\n";
    return kExitUnreachable;
  }
  std::signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  if (!send_all(fd, json{{"cmd", command::kCapture}, {"args", request_args}}.dump() + "\n")) {
    std::cerr << "voiceedgectl: cannot send to voiceedged: " << std::strerror(errno) << "\n";
    ::close(fd);
    return kExitUnreachable;
  }
  LineReader reader(fd);
  std::string line;
  auto got = reader.next(line, timeout_s * 1000);
  if (got != LineReader::Got::Line) {
    std::cerr << "voiceedgectl: no answer from voiceedged\n";
    ::close(fd);
    return kExitUnreachable;
  }
  auto header = json::parse(line, nullptr, false);
  if (header.is_discarded() || !header.value("ok", false)) {
    std::cerr << "voiceedgectl: " << (header.is_discarded() ? "the daemon's answer is not JSON" : error_text(header))
              << "\n";
    ::close(fd);
    return kExitCommandError;
  }
  FILE* out = target == "-" ? stdout : std::fopen(target.c_str(), "wb");
  if (out == nullptr) {
    std::cerr << "voiceedgectl: cannot write " << target << ": " << std::strerror(errno) << "\n";
    ::close(fd);
    return kExitCommandError;
  }
  const auto& h = header["data"];
  std::string ifaces;
  for (const auto& i : h.value("interfaces", json::array()))
    ifaces += (ifaces.empty() ? "" : ", ") + i.value("name", "") + (i.value("open", false) ? "" : " (not open)");
  std::cerr << fmt::format("Capturing {} ({}) on {}; Ctrl-C stops\n", h.value("phone", ""), h.value("mac", ""),
                           ifaces.empty() ? "no interface" : ifaces);
  bool stop_sent = false;
  bool write_failed = false;
  json summary;
  while (true) {
    got = reader.next(line, stop_sent ? 5000 : 0);
    if (got == LineReader::Got::Interrupted || (write_failed && !stop_sent)) {
      if (!stop_sent) send_all(fd, "{\"cmd\":\"stop\"}\n");
      stop_sent = true;
      continue;
    }
    if (got != LineReader::Got::Line) break;
    auto msg = json::parse(line, nullptr, false);
    if (msg.is_discarded()) continue;
    if (msg.contains("chunk") && msg["chunk"].is_string()) {
      auto bytes = base64_decode(msg["chunk"].get<std::string>());
      if (!bytes) continue;
      if (!write_failed &&
          (std::fwrite(bytes->data(), 1, bytes->size(), out) != bytes->size() || std::fflush(out) != 0))
        write_failed = true;
    } else if (msg.contains("end")) {
      summary = msg["end"];
      break;
    }
  }
  ::close(fd);
  if (out != stdout) std::fclose(out);
  if (summary.is_null()) {
    std::cerr << "voiceedgectl: the daemon closed the capture without a summary\n";
    return write_failed ? kExitCommandError : kExitOk;
  }
  if (as_json) {
    std::cerr << summary.dump() << "\n";
  } else {
    std::cerr << fmt::format("{} packets captured, {} dropped{} ({}){}\n", summary.value("packets", 0),
                             summary.value("dropped", 0),
                             summary.value("dropped", 0) > 0 ? " because the reader was too slow" : "",
                             summary.value("stopped", ""), target == "-" ? "" : ", written to " + target);
  }
  if (write_failed) {
    std::cerr << "voiceedgectl: writing " << target << " failed: " << std::strerror(errno) << "\n";
    return kExitCommandError;
  }
  return kExitOk;
}

int run_report(const std::string& socket, const json& args, int timeout_s, bool) {
  const std::string output = args.value("output", "");
  if (output.empty()) {
    std::cerr << "voiceedgectl: report needs --output FILE.tar.gz\n";
    return kExitCommandError;
  }
  std::string error;
  const int fd = connect_socket(socket, error);
  if (fd < 0) {
    std::cerr << "voiceedgectl: cannot reach voiceedged at " << socket << ": " << error << "\n";
    return kExitUnreachable;
  }
  if (!send_all(fd, json{{"cmd", command::kReport}, {"args", {{"phone", args.value("phone", "")}}}}.dump() + "\n")) {
    ::close(fd);
    std::cerr << "voiceedgectl: cannot send to voiceedged\n";
    return kExitUnreachable;
  }
  LineReader reader(fd);
  std::string line;
  const auto got = reader.next(line, timeout_s * 1000);
  ::close(fd);
  if (got != LineReader::Got::Line) {
    std::cerr << "voiceedgectl: no answer from voiceedged\n";
    return kExitUnreachable;
  }
  auto body = json::parse(line, nullptr, false);
  if (body.is_discarded() || !body.value("ok", false)) {
    std::cerr << "voiceedgectl: " << (body.is_discarded() ? "the daemon's answer is not JSON" : error_text(body))
              << "\n";
    return kExitCommandError;
  }
  auto archive = base64_decode(body["data"].value("archive_base64", ""));
  if (!archive) {
    std::cerr << "voiceedgectl: the report is damaged (bad base64)\n";
    return kExitCommandError;
  }
  std::ofstream out(output, std::ios::binary | std::ios::trunc);
  if (!out.write(archive->data(), static_cast<std::streamsize>(archive->size())) || !out.flush()) {
    std::cerr << "voiceedgectl: cannot write " << output << ": " << std::strerror(errno) << "\n";
    return kExitCommandError;
  }
  std::cout << fmt::format("Report for {} written to {} ({} bytes)\n", args.value("phone", ""), output,
                           archive->size());
  return kExitOk;
}

std::string render_diag(const json& data, const json&) {
  std::string out;
  std::vector<std::vector<std::string>> rows;
  for (const auto& i : data.value("interfaces", json::array()))
    rows.push_back({field(i, "name"), i.value("open", false) ? "yes" : "no", field(i, "frames"),
                    field(i, "kernel_drops"), field(i, "error")});
  out += render_table({"Interface", "Capturing", "Frames", "Kernel drops", "Error"}, rows);
  const auto& r = data.value("recorder", json::object());
  out += fmt::format("\nBoot recorder: {} phones, {} of {} bytes (per phone {}), {} packets cut\n", field(r, "phones"),
                     field(r, "bytes"), field(r, "total_limit"), field(r, "per_phone_limit"), field(r, "packets_cut"));
  out += fmt::format("Live captures: {}\n", data.value("captures", json::array()).size());
  return out;
}

}  // namespace

void add_diag_commands(CommandTable& table) {
  table.add(Command{command::words(command::kCapture),
                    {"phone"},
                    "live pcapng of everything the box exchanges with one phone (--write - for a pipe)",
                    nullptr,
                    {},
                    {"seconds", "count", "write"},
                    run_capture,
                    {{"seconds", "N"}, {"count", "N"}, {"write", "FILE|-"}}});
  table.add(Command{command::words(command::kReport),
                    {"phone"},
                    "one .tar.gz with the phone's timeline, config (masked), lease, logs, boot capture",
                    nullptr,
                    {},
                    {"output"},
                    run_report,
                    {{"output", "FILE.tar.gz"}},
                    {"output"}});
  table.add(Command{
      command::words(command::kShowDiag), {}, "capture interfaces, boot recorder memory, live captures", render_diag});
}

}  // namespace ve::ctl
