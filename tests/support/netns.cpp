#include "tests/support/netns.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>

namespace ve::test {

namespace {

// `ip [-n ns] args...`; appends the command and its stderr to `error` when it fails.
bool ip_in(const std::string& ns, std::vector<std::string> args, std::string& error) {
  std::vector<std::string> argv{"ip"};
  if (!ns.empty()) argv.insert(argv.end(), {"-n", ns});
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = test::run(argv);
  if (r.exit_code == 0) return true;
  std::string cmd;
  for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
  error += cmd + ": " + r.err;
  return false;
}

}  // namespace

std::string unique_name(const std::string& prefix) {
  static std::atomic<int> counter{0};
  return prefix + std::to_string(::getpid()) + "x" + std::to_string(counter++);
}

std::uint16_t free_port(int type, const std::string& ipv4) {
  const int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  ::inet_pton(AF_INET, ipv4.c_str(), &a.sin_addr);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);  // port 0: the kernel picks one
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

Namespace::Namespace(const std::string& prefix) : name_(unique_name(prefix)) {
  auto r = test::run({"ip", "netns", "add", name_});
  if (r.exit_code != 0) {
    error_ = "ip netns add " + name_ + ": " + r.err;
    return;
  }
  ip_in(name_, {"link", "set", "lo", "up"}, error_);
}

Namespace::~Namespace() {
  // Deleting the namespace deletes its links; a veth goes with either of its ends.
  (void)test::run({"ip", "netns", "del", name_});
}

std::vector<std::string> Namespace::exec(const std::vector<std::string>& argv) const {
  std::vector<std::string> out{"ip", "netns", "exec", name_};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

RunResult Namespace::run(const std::vector<std::string>& argv, std::chrono::seconds timeout) const {
  return test::run(exec(argv), timeout);
}

RunResult Namespace::sh(const std::string& command, std::chrono::seconds timeout) const {
  return run({"sh", "-c", command}, timeout);
}

RunResult Namespace::ip(const std::vector<std::string>& args) const {
  std::vector<std::string> argv{"ip", "-n", name_};
  argv.insert(argv.end(), args.begin(), args.end());
  return test::run(argv);
}

VethPair::VethPair(End a, End b) : a_ns_(a.ns ? a.ns->name() : ""), a_name_(a.name) {
  for (const Namespace* ns : {a.ns, b.ns}) {
    if (ns != nullptr && !ns->ok()) {
      error_ = ns->error();  // the namespace's own failure says more than ip's about the veth
      return;
    }
  }
  const std::string b_ns = b.ns ? b.ns->name() : "";
  std::vector<std::string> add{"link", "add", a.name, "type", "veth", "peer", "name", b.name};
  if (b_ns != a_ns_)
    add.insert(add.end(), {"netns", b_ns.empty() ? std::to_string(::getpid()) : b_ns});  // a pid: its netns
  if (!ip_in(a_ns_, add, error_)) return;
  for (const auto& [ns, end] : {std::pair{a_ns_, &a}, std::pair{b_ns, &b}}) {
    if (!end->address.empty() && !ip_in(ns, {"addr", "add", end->address, "dev", end->name}, error_)) return;
    if (!ip_in(ns, {"link", "set", end->name, "up"}, error_)) return;
  }
}

VethPair::~VethPair() {
  std::string ignored;  // gone already when its namespace was deleted first
  (void)ip_in(a_ns_, {"link", "del", a_name_}, ignored);
}

}  // namespace ve::test
