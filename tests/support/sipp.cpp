#include "tests/support/sipp.hpp"

namespace ve::test {

std::vector<std::string> SippCommand::argv() const {
  std::vector<std::string> a{"sipp", remote,     "-sf", scenario, "-m",  "1",  "-t",  transport, "-i",      local_ip,
                             "-p",   local_port, "-s",  user,     "-au", user, "-ap", password,  "-nostdin"};
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

}  // namespace ve::test
