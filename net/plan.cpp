// The reconciler: wanted topology vs what the kernel has -> the actions that close the gap.
// Pure: no sockets, no clock, no logging.
#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "net/net.hpp"
#include "ve/ipv4.hpp"

namespace ve::net {

std::string_view to_string(Mode m) {
  switch (m) {
    case Mode::None: return "none";
    case Mode::Bridge: return "bridge";
    case Mode::Subinterface: return "subinterface";
  }
  return "?";
}

std::string_view to_string(ActionKind k) {
  switch (k) {
    case ActionKind::CreateBridge: return "create-bridge";
    case ActionKind::EnableVlanFiltering: return "enable-vlan-filtering";
    case ActionKind::SetMaster: return "set-master";
    case ActionKind::ReleaseMaster: return "release-master";
    case ActionKind::AddBridgeVlan: return "add-bridge-vlan";
    case ActionKind::DelBridgeVlan: return "del-bridge-vlan";
    case ActionKind::CreateVlanLink: return "create-vlan-link";
    case ActionKind::AddAddress: return "add-address";
    case ActionKind::DelAddress: return "del-address";
    case ActionKind::SetUp: return "set-up";
    case ActionKind::DeleteLink: return "delete-link";
  }
  return "?";
}

std::string_view to_string(IssueKind k) {
  switch (k) {
    case IssueKind::Unsupported: return "unsupported";
    case IssueKind::Absent: return "absent";
    case IssueKind::Conflict: return "conflict";
    case IssueKind::Failed: return "error";
  }
  return "?";
}

std::string Ipv4Cidr::to_string() const { return fmt::format("{}/{}", format_ipv4(address), prefix_len); }

std::string describe(const Action& a) {
  switch (a.kind) {
    case ActionKind::CreateBridge: return fmt::format("create bridge {} (vlan filtering)", a.name);
    case ActionKind::EnableVlanFiltering: return fmt::format("enable vlan filtering on {}", a.name);
    case ActionKind::SetMaster: return fmt::format("add {} to bridge {}", a.name, a.peer);
    case ActionKind::ReleaseMaster: return fmt::format("release {} from its bridge", a.name);
    case ActionKind::AddBridgeVlan:
      return fmt::format("add vlan {}{}{} on {}{}", a.vid, a.pvid ? " pvid" : "", a.untagged ? " untagged" : " tagged",
                         a.name, a.self ? " (self)" : "");
    case ActionKind::DelBridgeVlan:
      return fmt::format("delete vlan {} on {}{}", a.vid, a.name, a.self ? " (self)" : "");
    case ActionKind::CreateVlanLink: return fmt::format("create vlan interface {} on {} id {}", a.name, a.peer, a.vid);
    case ActionKind::AddAddress: return fmt::format("add address {} to {}", a.address.to_string(), a.name);
    case ActionKind::DelAddress: return fmt::format("delete address {} from {}", a.address.to_string(), a.name);
    case ActionKind::SetUp: return fmt::format("set {} up", a.name);
    case ActionKind::DeleteLink: return fmt::format("delete {}", a.name);
  }
  return "?";
}

const PresentLink* Present::find(std::string_view name) const {
  for (const auto& l : links)
    if (l.name == name) return &l;
  return nullptr;
}

const PresentLink* Present::find(int ifindex) const {
  for (const auto& l : links)
    if (l.ifindex == ifindex) return &l;
  return nullptr;
}

namespace {

Action make(ActionKind kind, std::string name) {
  Action a;
  a.kind = kind;
  a.name = std::move(name);
  return a;
}

Action bridge_vlan(ActionKind kind, const std::string& name, const BridgeVlan& v, bool self) {
  Action a = make(kind, name);
  a.vid = v.vid;
  a.pvid = v.pvid;
  a.untagged = v.untagged;
  a.self = self;
  return a;
}

const std::vector<BridgeVlan>& vlans_of(const Present& present, const PresentLink* link) {
  static const std::vector<BridgeVlan> kNone;
  if (link == nullptr) return kNone;
  auto it = present.bridge_vlans.find(link->ifindex);
  return it == present.bridge_vlans.end() ? kNone : it->second;
}

const std::vector<Ipv4Cidr>& addresses_of(const Present& present, const PresentLink* link) {
  static const std::vector<Ipv4Cidr> kNone;
  if (link == nullptr) return kNone;
  auto it = present.addresses.find(link->ifindex);
  return it == present.addresses.end() ? kNone : it->second;
}

// Adds what is missing or has the wrong flags; removes extras only where `may_remove`.
void diff_vlans(const std::string& name, const std::vector<BridgeVlan>& want, const std::vector<BridgeVlan>& have,
                bool self, bool may_remove, Plan& out) {
  for (const auto& w : want) {
    auto it = std::find_if(have.begin(), have.end(), [&](const BridgeVlan& h) { return h.vid == w.vid; });
    // Re-adding an existing VLAN with other flags updates them in place: no flap.
    if (it == have.end() || *it != w) out.actions.push_back(bridge_vlan(ActionKind::AddBridgeVlan, name, w, self));
  }
  if (!may_remove) return;
  for (const auto& h : have) {
    bool wanted = std::any_of(want.begin(), want.end(), [&](const BridgeVlan& w) { return w.vid == h.vid; });
    if (!wanted) out.actions.push_back(bridge_vlan(ActionKind::DelBridgeVlan, name, h, self));
  }
}

bool valid_vid(int vid) { return vid >= 1 && vid <= 4094; }

std::string missing_features(const Wanted& wanted, const KernelFeatures& f) {
  std::vector<std::string> missing;
  if (wanted.mode == Mode::Bridge) {
    if (!f.bridge) missing.emplace_back("bridge");
    if (!f.bridge_vlan_filtering) missing.emplace_back("bridge VLAN filtering");
  }
  if (!f.vlan_8021q) missing.emplace_back("802.1Q VLAN interfaces (8021q)");
  std::string out;
  for (const auto& m : missing) out += (out.empty() ? "" : ", ") + m;
  return out;
}

// Brings a VLAN interface to what is wanted: create, fix, address, up.
void plan_vlan_interface(const WantedVlanInterface& vi, const Present& present, bool parent_created,
                         std::set<std::string>& keep, Plan& out) {
  keep.insert(vi.name);
  const PresentLink* parent = present.find(vi.parent);
  const PresentLink* link = present.find(vi.name);
  if (parent == nullptr && !parent_created) {
    out.issues.push_back({vi.name, IssueKind::Absent, fmt::format("parent {} is not present", vi.parent)});
    return;
  }
  bool create = link == nullptr;
  if (link != nullptr) {
    bool right =
        link->kind == "vlan" && link->vlan_id == vi.vid && parent != nullptr && link->parent == parent->ifindex;
    if (!right) {
      if (!link->owned()) {
        out.issues.push_back(
            {vi.name, IssueKind::Conflict,
             fmt::format("{} exists and is not voiceedge's VLAN {} on {}; left alone", vi.name, vi.vid, vi.parent)});
        return;
      }
      out.actions.push_back(make(ActionKind::DeleteLink, vi.name));
      create = true;
    }
  }
  if (create) {
    Action a = make(ActionKind::CreateVlanLink, vi.name);
    a.peer = vi.parent;
    a.vid = vi.vid;
    out.actions.push_back(a);
  }
  const auto& have = create ? std::vector<Ipv4Cidr>{} : addresses_of(present, link);
  if (vi.address && std::find(have.begin(), have.end(), *vi.address) == have.end()) {
    Action a = make(ActionKind::AddAddress, vi.name);
    a.address = *vi.address;
    out.actions.push_back(a);
  }
  // Stray IPv4 addresses go only from interfaces we created.
  if (!create && link->owned()) {
    for (const auto& h : have) {
      if (vi.address && h == *vi.address) continue;
      Action a = make(ActionKind::DelAddress, vi.name);
      a.address = h;
      out.actions.push_back(a);
    }
  }
  if (create || !link->admin_up) out.actions.push_back(make(ActionKind::SetUp, vi.name));
}

void plan_bridge(const Wanted& wanted, const Present& present, std::set<std::string>& keep, Plan& out) {
  keep.insert(wanted.bridge);
  const PresentLink* br = present.find(wanted.bridge);
  bool created = false;
  if (br == nullptr) {
    out.actions.push_back(make(ActionKind::CreateBridge, wanted.bridge));
    out.actions.push_back(make(ActionKind::SetUp, wanted.bridge));
    created = true;
  } else if (br->kind != "bridge") {
    for (const auto& p : wanted.ports)
      out.issues.push_back({p.name, IssueKind::Conflict,
                            fmt::format("{} exists and is not a bridge; nothing programmed", wanted.bridge)});
    return;
  } else {
    if (!br->vlan_filtering) out.actions.push_back(make(ActionKind::EnableVlanFiltering, wanted.bridge));
    if (!br->admin_up) out.actions.push_back(make(ActionKind::SetUp, wanted.bridge));
  }
  const bool owned_bridge = created || br->owned();

  // The bridge device itself must carry each VLAN that has an interface on it, tagged.
  std::vector<BridgeVlan> self_want;
  for (const auto& vi : wanted.vlan_interfaces) {
    if (std::none_of(self_want.begin(), self_want.end(), [&](const BridgeVlan& v) { return v.vid == vi.vid; }))
      self_want.push_back({vi.vid, false, false});
  }
  diff_vlans(wanted.bridge, self_want, vlans_of(present, br), true, owned_bridge, out);

  std::set<std::string> wanted_ports;
  for (const auto& p : wanted.ports) {
    wanted_ports.insert(p.name);
    const PresentLink* link = present.find(p.name);
    if (link == nullptr) {
      out.issues.push_back({p.name, IssueKind::Absent, "port not present; will be programmed when it appears"});
      continue;
    }
    bool member = br != nullptr && link->master == br->ifindex;
    if (!member && link->master != 0) {
      const PresentLink* other = present.find(link->master);
      out.issues.push_back({p.name, IssueKind::Conflict,
                            fmt::format("port is a member of {}; left alone", other ? other->name : "another master")});
      continue;
    }
    if (!member) {
      Action a = make(ActionKind::SetMaster, p.name);
      a.peer = wanted.bridge;
      out.actions.push_back(a);
    }
    std::vector<BridgeVlan> want{{p.pvid, true, true}};
    if (p.voice_vlan != 0 && p.voice_vlan != p.pvid) want.push_back({p.voice_vlan, false, false});
    // A port that joins now gets the bridge's default PVID from the kernel; the next pass (the
    // manager re-plans after applying) removes it. On a bridge we own, extras are ours to remove.
    diff_vlans(p.name, want, member ? vlans_of(present, link) : std::vector<BridgeVlan>{}, false, owned_bridge, out);
    if (!link->admin_up) out.actions.push_back(make(ActionKind::SetUp, p.name));
  }
  // Ports of our bridge that the site file no longer lists are released (not ours: only on our bridge).
  if (br != nullptr && owned_bridge) {
    for (const auto& l : present.links) {
      if (l.master != br->ifindex || wanted_ports.count(l.name) != 0) continue;
      out.actions.push_back(make(ActionKind::ReleaseMaster, l.name));
    }
  }
  for (const auto& vi : wanted.vlan_interfaces) plan_vlan_interface(vi, present, created, keep, out);
}

void plan_subinterfaces(const Wanted& wanted, const Present& present, std::set<std::string>& keep, Plan& out) {
  for (const auto& p : wanted.ports) {
    const PresentLink* link = present.find(p.name);
    if (link == nullptr) {
      out.issues.push_back({p.name, IssueKind::Absent, "port not present; will be programmed when it appears"});
      continue;
    }
    if (!link->admin_up) out.actions.push_back(make(ActionKind::SetUp, p.name));
  }
  for (const auto& vi : wanted.vlan_interfaces) {
    const PresentLink* parent = present.find(vi.parent);
    if (parent != nullptr && !parent->admin_up &&
        std::none_of(out.actions.begin(), out.actions.end(),
                     [&](const Action& a) { return a.kind == ActionKind::SetUp && a.name == vi.parent; }))
      out.actions.push_back(make(ActionKind::SetUp, vi.parent));
    plan_vlan_interface(vi, present, false, keep, out);
  }
}

}  // namespace

Plan plan(const Wanted& wanted, const Present& present, const KernelFeatures& features) {
  Plan out;
  if (wanted.mode == Mode::None) return out;  // hands off: nothing programmed, nothing removed

  // VLAN ids outside 1..4094 cannot be programmed; say so instead of failing in the kernel.
  Wanted valid = wanted;
  for (auto& p : valid.ports) {
    if (!valid_vid(p.pvid)) {
      out.issues.push_back({p.name, IssueKind::Failed, fmt::format("data VLAN {} is not 1-4094", p.pvid)});
      p.pvid = 1;
    }
    if (p.voice_vlan != 0 && !valid_vid(p.voice_vlan)) {
      out.issues.push_back({p.name, IssueKind::Failed, fmt::format("voice VLAN {} is not 1-4094", p.voice_vlan)});
      p.voice_vlan = 0;
    }
  }
  std::erase_if(valid.vlan_interfaces, [](const WantedVlanInterface& vi) { return !valid_vid(vi.vid); });

  std::string missing = missing_features(valid, features);
  if (!missing.empty()) {
    // Untagged operation: touch nothing, so the ports keep working as plain interfaces.
    for (const auto& p : valid.ports) {
      if (present.find(p.name) == nullptr) {
        out.issues.push_back({p.name, IssueKind::Absent, "port not present"});
        continue;
      }
      out.issues.push_back(
          {p.name, IssueKind::Unsupported,
           fmt::format("kernel lacks {}; port left untagged (data VLAN only){}", missing,
                       p.voice_vlan != 0 ? fmt::format(", voice VLAN {} not carried", p.voice_vlan) : std::string{})});
    }
    return out;
  }

  std::set<std::string> keep;
  if (valid.mode == Mode::Bridge)
    plan_bridge(valid, present, keep, out);
  else
    plan_subinterfaces(valid, present, keep, out);

  // Our own links that nothing wants any more. VLAN links first, bridges last.
  std::vector<Action> deletes;
  for (const auto& l : present.links) {
    if (!l.owned() || keep.count(l.name) != 0) continue;
    // Deleting a link takes its upper devices with it: never when one of them is not ours.
    auto foreign_upper = std::find_if(present.links.begin(), present.links.end(), [&](const PresentLink& u) {
      return u.parent == l.ifindex && u.ifindex != l.ifindex && !u.owned();
    });
    if (foreign_upper != present.links.end()) {
      out.issues.push_back(
          {l.name, IssueKind::Conflict,
           fmt::format("no longer wanted, but kept: {} (not voiceedge's) sits on it", foreign_upper->name)});
      continue;
    }
    if (l.kind == "bridge")
      deletes.push_back(make(ActionKind::DeleteLink, l.name));
    else
      deletes.insert(deletes.begin(), make(ActionKind::DeleteLink, l.name));
  }
  // Delete stale links before creating new ones, so a renamed interface can reuse a name.
  out.actions.insert(out.actions.begin(), deletes.begin(), deletes.end());
  return out;
}

}  // namespace ve::net
