#include "tests/support/site_file.hpp"

namespace ve::test {

std::string SiteFile::yaml() const {
  std::string y = "site: { name: " + name + " }\n";
  y += "state_dir: @STATE@\n";
  y += "control: " + control + "\n";
  y += "ports:" + (ports.starts_with('\n') ? ports : " " + ports + "\n");
  y += sections;
  y += "dhcp:\n  kea: " + kea + "\n";
  y += "provisioning:\n  root: \"@STATE@/tftp\"\n";
  y += "  tftp: { listen: \"" + tftp_listen + "\" }\n";
  y += "  http: { listen: \"" + http_listen + "\" }\n" + provisioning;
  y += sip.empty() ? "sip: { listen: " + sip_listen + " }\n" : "sip:\n  listen: " + sip_listen + "\n" + sip;
  y += "net: { mode: none }\n";
  if (!phones.empty()) y += "phones:\n" + phones;
  return y;
}

}  // namespace ve::test
