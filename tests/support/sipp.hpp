#pragma once
// Test support: sipp's command line for one phone's run of a scenario, built in one place (the
// sipp, registrar, proxy, phone-control and SRST tests all drive sipp the same way).
#include <string>
#include <vector>

namespace ve::test {

struct SippCommand {
  std::string remote;            // where it sends: "127.0.0.1:5060"
  std::string scenario;          // the scenario file (-sf)
  std::string transport = "u1";  // u1: UDP, t1: TCP
  std::string local_ip = "127.0.0.1";
  std::string local_port;           // -p: a fixed port keeps the Contact of a refresh the same
  std::string user;                 // -s and the digest user (-au)
  std::string password;             // -ap
  std::vector<std::string> more{};  // further flags: -key, -cid_str, -timeout, traces

  // {"sipp", remote, "-sf", scenario, "-m", "1" (one call), "-t", ..., "-nostdin", more...}
  std::vector<std::string> argv() const;
};

}  // namespace ve::test
