#pragma once
// The list of components voiceedged runs. daemon/CMakeLists.txt generates add_all_components()
// from the daemon/<name>_component.cpp files present, in a fixed order (net, poe, dhcp, cdp,
// provision, sip): each file defines `void add_<name>_component(Wiring&)`.
#include <memory>
#include <vector>

#include "daemon/component.hpp"

namespace ve::daemon {

struct Wiring {
  Context& ctx;
  std::vector<std::unique_ptr<Component>> components;
};

void add_all_components(Wiring& arg);

}  // namespace ve::daemon
