#pragma once
// Test support: named network namespaces and veth pairs between them, built with iproute2 so that
// real peers (tshark, lldpd, kea-dhcp4, sipp, kamailio, voiceedged) can run inside through
// `ip netns exec`. Names carry the test's pid and a counter, so parallel tests do not collide, and
// the destructors delete what the constructors made even when an ASSERT ends the test early.
// (tests/net_testns.hpp is the other kind: anonymous namespaces the test thread itself enters.)
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "tests/support/process.hpp"

namespace ve::test {

// `prefix` + pid + "x" + a per-process counter: unique among the tests running now. Keep the prefix
// to 4 characters where the result names an interface (IFNAMSIZ: 15 characters).
std::string unique_name(const std::string& prefix);

// A port nobody uses now on `ipv4` in the calling thread's namespace, of `type` (SOCK_DGRAM,
// SOCK_STREAM): for a peer's own socket, e.g. so that sipp's refresh reuses its Contact.
std::uint16_t free_port(int type, const std::string& ipv4 = "127.0.0.1");

// A named network namespace with its loopback up; deleted, with every link in it, by the destructor.
class Namespace {
 public:
  // Named unique_name(prefix).
  explicit Namespace(const std::string& prefix);
  ~Namespace();
  Namespace(const Namespace&) = delete;
  Namespace& operator=(const Namespace&) = delete;

  const std::string& name() const { return name_; }
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }  // what failed while setting it up

  // `argv` prefixed with `ip netns exec <name>`: for Child, Daemon's wrapper or run().
  std::vector<std::string> exec(const std::vector<std::string>& argv = {}) const;
  RunResult run(const std::vector<std::string>& argv, std::chrono::seconds timeout = std::chrono::seconds(60)) const;
  // `sh -c command` inside.
  RunResult sh(const std::string& command, std::chrono::seconds timeout = std::chrono::seconds(60)) const;
  // `ip -n <name> <args...>`: links and addresses in this namespace.
  RunResult ip(const std::vector<std::string>& args) const;

 private:
  std::string name_;
  std::string error_;
};

// A veth pair with one end in each of two namespaces, both ends up, each with an optional IPv4
// address. The destructor deletes the pair (a namespace deleted first has taken it along already).
// ok() covers the namespaces too: declare them first, then the pair, and check the pair.
class VethPair {
 public:
  struct End {
    const Namespace* ns = nullptr;  // nullptr: the test process's own namespace
    std::string name;               // the interface (at most 15 characters)
    std::string address{};          // e.g. "10.10.100.1/24"; empty: none
  };
  VethPair(End a, End b);
  ~VethPair();
  VethPair(const VethPair&) = delete;
  VethPair& operator=(const VethPair&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

 private:
  std::string a_ns_;    // the namespace's name ("" for our own): the pair may outlive the object
  std::string a_name_;  // deleting end a deletes the pair
  std::string error_;
};

}  // namespace ve::test
