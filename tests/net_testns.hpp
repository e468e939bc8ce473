#pragma once
// Test scaffolding for net/: a pair of fresh network namespaces ("box", where the code under test
// runs, and "peer", the far end of a veth), plus small libnl helpers to build the test topology.
// The namespaces are anonymous (unshare), so they and every link in them vanish when the last fd
// closes: cleanup happens even when a test fails or crashes.
#include <memory>
#include <string>

#include "ve/result.hpp"

namespace ve::net::testing {

class NetnsPair {
 public:
  // Moves the calling thread into a new "box" namespace (and remembers where it came from).
  static Result<std::unique_ptr<NetnsPair>, std::string> create();
  ~NetnsPair();  // back to the original namespace; both namespaces are released
  NetnsPair(const NetnsPair&) = delete;
  NetnsPair& operator=(const NetnsPair&) = delete;

  int peer_fd() const { return peer_; }
  // Runs `fn` with the thread in the peer namespace, then returns to box.
  template <typename Fn>
  auto in_peer(Fn fn) {
    enter(peer_);
    struct Back {
      const NetnsPair* p;
      ~Back() { p->enter(p->box_); }
    } back{this};
    return fn();
  }

 private:
  NetnsPair(int orig, int box, int peer) : orig_(orig), box_(box), peer_(peer) {}
  void enter(int fd) const;
  int orig_ = -1;
  int box_ = -1;
  int peer_ = -1;
};

// All in the calling thread's current namespace.
Result<void, std::string> add_veth(const std::string& name, const std::string& peer_name, int peer_ns_fd);
Result<void, std::string> set_link_up(const std::string& name, bool up);
Result<void, std::string> add_vlan(const std::string& name, const std::string& parent, int vid);
Result<void, std::string> add_address(const std::string& name, const std::string& cidr);
Result<void, std::string> rename_link(const std::string& from, const std::string& to);
bool link_exists(const std::string& name);

}  // namespace ve::net::testing
