#pragma once
// A small site used by the provision tests, built directly as structs.
#include <memory>
#include <string>

#include "config/config.hpp"

namespace ve::provision::testing {

inline config::Phone make_phone(const std::string& mac, const std::string& ext, const std::string& password) {
  config::Phone p;
  p.mac = *MacAddress::parse(mac);
  p.model = "CP-7841";
  p.description = "Desk " + ext;
  config::Line line;
  line.button = 1;
  line.extension = ext;
  line.display = "Front <desk> & co";
  line.auth_user = ext;
  line.password = config::Secret(password);
  p.lines.push_back(line);
  return p;
}

inline std::shared_ptr<config::SiteConfig> make_site(const std::string& root = "/nonexistent") {
  auto s = std::make_shared<config::SiteConfig>();
  s->site.name = "branch-01";
  s->site.timezone = "Europe/Berlin";
  s->site.locale = "English_United_States";
  s->provisioning.root = root;
  s->provisioning.secure = false;
  s->provisioning.default_load = "sip78xx.14-2-1-0001-14";
  s->provisioning.call_manager_group = {{"cm1", "10.10.100.1", 5060, 0}, {"cm2", "10.10.100.2", 5080, 1}};
  s->phones.push_back(make_phone("00:11:22:33:44:55", "1001", "s3cret"));
  auto second = make_phone("00:11:22:33:44:66", "1002", "pa<ss>&\"word");
  second.load = "sip78xx.12-8-1-0001-455";
  config::Line l2;
  l2.button = 2;
  l2.extension = "1003";
  l2.auth_user = "u1003";
  l2.password = config::Secret("x");
  second.lines.push_back(l2);
  s->phones.push_back(second);
  return s;
}

}  // namespace ve::provision::testing
