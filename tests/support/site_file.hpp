#pragma once
// Test support: the site YAML most daemon tests start from: no ports, an unmanaged Kea, TFTP, HTTP
// and SIP on ephemeral loopback ports, no VLAN programming. Every part can be replaced or added to;
// @STATE@ and @SOCKET@ are left for Daemon to fill in (tests/support/daemon.hpp).
#include <string>

namespace ve::test {

struct SiteFile {
  // site.name
  std::string name = "ve-test";
  // The value of control:
  std::string control = "{ socket: @SOCKET@ }";
  // The value of ports: a flow list ("[]") or block lines that start with a newline.
  std::string ports = "[]";
  // More top-level sections (cdp:, lldp:, poe:), whole lines.
  std::string sections{};
  // The value of dhcp.kea:
  std::string kea = R"({ manage: false, event_socket: "@STATE@/kea.sock" })";
  // provisioning.tftp.listen and provisioning.http.listen
  std::string tftp_listen = "127.0.0.1:0";
  std::string http_listen = "127.0.0.1:0";
  // More lines under provisioning: (indented by two).
  std::string provisioning{};
  // The value of sip.listen:
  std::string sip_listen = R"(["udp:127.0.0.1:0", "tcp:127.0.0.1:0"])";
  // More lines under sip: (indented by two); none: sip is one flow line.
  std::string sip{};
  // The list under phones: (lines indented by two); empty: no phones.
  std::string phones{};

  // Lines in this order: site, state_dir, control, ports, sections, dhcp (2), provisioning (4 + yours),
  // sip (1, or 2 + yours), net, phones (1 + yours). Tests that check line numbers count on it.
  std::string yaml() const;
};

}  // namespace ve::test
