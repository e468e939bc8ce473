// The kernel's PSE framework through ethtool generic netlink. This is the only file in poe/ that
// opens a socket. Requests are short kernel calls; a receive timeout bounds how long one can take
// so a stuck PSE controller cannot stall the daemon's loop for long.
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <netlink/errno.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/handlers.h>
#include <netlink/msg.h>
#include <netlink/socket.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "poe/poe.hpp"
#include "poe/pse_codec.hpp"
#include "ve/log.hpp"
#include "ve/netlink.hpp"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

namespace ve::poe {

namespace {

using nl::CbPtr;
using nl::SockPtr;

// NLMSGERR_ATTR_MSG from <linux/netlink.h> (4.12): the extended ack's text.
constexpr int kExtAckMsg = 1;

DriverErrorCode code_for_errno(int err) {
  switch (err) {
    case EOPNOTSUPP: return DriverErrorCode::NoPse;
    case ENODEV: return DriverErrorCode::NoSuchPort;
    case EPERM:
    case EACCES: return DriverErrorCode::PermissionDenied;
    case EBUSY:
    case EAGAIN: return DriverErrorCode::Busy;
    case EINVAL:
    case ERANGE: return DriverErrorCode::Invalid;
    default: return DriverErrorCode::Io;
  }
}

// One request/answer exchange: the reply (if any), then an ack or an error.
struct Exchange {
  std::optional<pse::Reply> reply;
  int error = 0;  // positive errno from the kernel's NLMSG_ERROR
  std::string extack;
  bool done = false;
  std::string parse_failure;
};

int on_valid(nl_msg* msg, void* arg) {
  auto* ex = static_cast<Exchange*>(arg);
  auto parsed = pse::parse_reply(pse::bytes_of(msg));
  if (parsed) {
    ex->reply = std::move(parsed.value());
  } else {
    ex->parse_failure = std::string(pse::to_string(parsed.error()));
  }
  return NL_OK;
}

int on_ack(nl_msg*, void* arg) {
  static_cast<Exchange*>(arg)->done = true;
  return NL_STOP;
}

int on_error(sockaddr_nl*, nlmsgerr* err, void* arg) {
  auto* ex = static_cast<Exchange*>(arg);
  ex->error = -err->error;
  ex->done = true;
  // Extended ack TLVs follow the echoed request (only its header when NLM_F_CAPPED).
  auto* nlh = reinterpret_cast<nlmsghdr*>(reinterpret_cast<char*>(err) - NLMSG_HDRLEN);
  if ((nlh->nlmsg_flags & NLM_F_ACK_TLVS) != 0) {
    std::size_t offset = NLMSG_HDRLEN + sizeof(nlmsgerr);
    if ((nlh->nlmsg_flags & NLM_F_CAPPED) == 0) offset += NLMSG_ALIGN(err->msg.nlmsg_len) - NLMSG_HDRLEN;
    if (offset < nlh->nlmsg_len) {
      auto* attrs = reinterpret_cast<nlattr*>(reinterpret_cast<char*>(nlh) + offset);
      const int len = static_cast<int>(nlh->nlmsg_len - offset);
      nlattr* pos = nullptr;
      int rem = 0;
      nla_for_each_attr(pos, attrs, len, rem) {
        if (nla_type(pos) == kExtAckMsg && nla_len(pos) > 0) {
          const auto* text = static_cast<const char*>(nla_data(pos));
          ex->extack.assign(text, strnlen(text, static_cast<std::size_t>(nla_len(pos))));
        }
      }
    }
  }
  return NL_STOP;
}

}  // namespace

struct LinuxPseDriver::Impl {
  std::vector<std::string> ports;
  SockPtr sock;     // requests
  SockPtr monitor;  // PSE notifications (may be absent on older kernels)
  int family = -1;

  DriverResult<std::optional<pse::Reply>> transact(pse::NlMsgPtr msg, const std::string& port) {
    if (!msg) return unexpected(DriverError{DriverErrorCode::Io, "cannot build netlink message", ENOMEM});
    Exchange ex;
    CbPtr cb(nl_cb_alloc(NL_CB_DEFAULT));
    if (!cb) return unexpected(DriverError{DriverErrorCode::Io, "cannot allocate netlink callbacks", ENOMEM});
    nl_cb_set(cb.get(), NL_CB_VALID, NL_CB_CUSTOM, on_valid, &ex);
    nl_cb_set(cb.get(), NL_CB_ACK, NL_CB_CUSTOM, on_ack, &ex);
    nl_cb_err(cb.get(), NL_CB_CUSTOM, on_error, &ex);
    if (int r = nl_send_auto(sock.get(), msg.get()); r < 0) {
      return unexpected(DriverError{DriverErrorCode::Io, std::string("netlink send: ") + nl_geterror(r), EIO});
    }
    while (!ex.done) {
      const int r = nl_recvmsgs(sock.get(), cb.get());
      if (r < 0 && !ex.done) {
        const bool timeout = (r == -NLE_AGAIN);
        return unexpected(DriverError{timeout ? DriverErrorCode::Busy : DriverErrorCode::Io,
                                      std::string("netlink receive on ") + port + ": " + nl_geterror(r),
                                      timeout ? EAGAIN : EIO});
      }
    }
    if (ex.error != 0) {
      std::string text = ex.extack.empty() ? std::string(std::strerror(ex.error)) : ex.extack;
      return unexpected(DriverError{code_for_errno(ex.error), std::move(text), ex.error});
    }
    if (!ex.parse_failure.empty()) {
      return unexpected(DriverError{DriverErrorCode::Io, "malformed PSE reply: " + ex.parse_failure, EPROTO});
    }
    return std::move(ex.reply);
  }
};

LinuxPseDriver::LinuxPseDriver(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LinuxPseDriver::~LinuxPseDriver() = default;

DriverResult<std::unique_ptr<LinuxPseDriver>> LinuxPseDriver::open(std::vector<std::string> ports) {
  auto impl = std::make_unique<Impl>();
  impl->ports = std::move(ports);
  impl->sock.reset(nl_socket_alloc());
  if (!impl->sock) return unexpected(DriverError{DriverErrorCode::Io, "cannot allocate netlink socket", ENOMEM});
  if (int r = genl_connect(impl->sock.get()); r < 0) {
    return unexpected(DriverError{DriverErrorCode::Io, std::string("generic netlink: ") + nl_geterror(r), EIO});
  }
  impl->family = genl_ctrl_resolve(impl->sock.get(), pse::kFamilyName);
  if (impl->family < 0) {
    return unexpected(DriverError{DriverErrorCode::NotSupported,
                                  "kernel has no ethtool netlink family (CONFIG_ETHTOOL_NETLINK)", EOPNOTSUPP});
  }
  const int fd = nl_socket_get_fd(impl->sock.get());
  const int one = 1;
  // Kernel error texts ("No PSE is attached") come back as extended acks.
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  timeval timeout{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);

  // Notifications go to the "monitor" group; PSE events exist from 6.17.
  const int group = genl_ctrl_resolve_grp(impl->sock.get(), pse::kFamilyName, pse::kMonitorGroup);
  if (group >= 0) {
    SockPtr mon(nl_socket_alloc());
    if (mon && genl_connect(mon.get()) == 0) {
      nl_socket_disable_seq_check(mon.get());
      if (nl_socket_add_membership(mon.get(), group) == 0 && nl_socket_set_nonblocking(mon.get()) == 0) {
        impl->monitor = std::move(mon);
      }
    }
  }
  return std::unique_ptr<LinuxPseDriver>(new LinuxPseDriver(std::move(impl)));
}

std::vector<std::string> LinuxPseDriver::ports() const { return impl_->ports; }
int LinuxPseDriver::family_id() const { return impl_->family; }

DriverResult<PortStatus> LinuxPseDriver::status(const std::string& port) {
  auto r = impl_->transact(pse::build_get(impl_->family, port), port);
  if (!r) {
    if (r.error().code == DriverErrorCode::NoPse) {
      PortStatus s;
      s.port = port;
      s.detection = Detection::NoPse;
      s.fault = r.error().message;  // the kernel's words, e.g. "No PSE is attached"
      return s;
    }
    return unexpected(r.error());
  }
  if (!r.value()) return unexpected(DriverError{DriverErrorCode::Io, "PSE_GET got no reply", EPROTO});
  return pse::to_port_status(*r.value(), port);
}

DriverResult<void> LinuxPseDriver::set_admin(const std::string& port, bool enabled) {
  // C33 (PoE) first; a PoDL-only PSE rejects C33 control with EOPNOTSUPP.
  auto r = impl_->transact(pse::build_set_c33_admin(impl_->family, port, enabled), port);
  if (!r && r.error().code == DriverErrorCode::NoPse) {
    auto podl = impl_->transact(pse::build_set_podl_admin(impl_->family, port, enabled), port);
    if (podl) return {};
  }
  if (!r) return unexpected(r.error());
  return {};
}

DriverResult<void> LinuxPseDriver::set_power_limit(const std::string& port, std::uint32_t mw) {
  auto r = impl_->transact(pse::build_set_power_limit(impl_->family, port, mw), port);
  if (!r) return unexpected(r.error());
  return {};
}

DriverResult<void> LinuxPseDriver::set_priority(const std::string& port, std::uint32_t prio) {
  auto r = impl_->transact(pse::build_set_priority(impl_->family, port, prio), port);
  if (!r) return unexpected(r.error());
  return {};
}

int LinuxPseDriver::notification_fd() const { return impl_->monitor ? nl_socket_get_fd(impl_->monitor.get()) : -1; }

std::vector<PortEvent> LinuxPseDriver::read_notifications() {
  std::vector<PortEvent> changed;
  if (!impl_->monitor) return changed;
  CbPtr cb(nl_cb_alloc(NL_CB_DEFAULT));
  if (!cb) return changed;
  struct Collect {
    std::vector<PortEvent>* events;
    const std::vector<std::string>* ports;
  } collect{&changed, &impl_->ports};
  nl_cb_set(
      cb.get(), NL_CB_VALID, NL_CB_CUSTOM,
      [](nl_msg* msg, void* arg) -> int {
        auto* c = static_cast<Collect*>(arg);
        // The monitor group carries every ethtool notification; keep only PSE ones about our ports.
        auto parsed = pse::parse_notification(pse::bytes_of(msg));
        if (!parsed) {
          if (parsed.error() != pse::ParseError::WrongCommand) {
            ve::logger("poe")->warn("malformed PSE notification dropped: {}", pse::to_string(parsed.error()));
          }
          return NL_OK;
        }
        if (std::find(c->ports->begin(), c->ports->end(), parsed->ifname) == c->ports->end()) return NL_OK;
        ve::logger("poe")->debug("{}: PSE notification: {}", parsed->ifname, pse::event_names(parsed->events));
        c->events->push_back(PortEvent{parsed->ifname, pse::to_pse_events(parsed->events)});
        return NL_OK;
      },
      &collect);
  for (int i = 0; i < 64; ++i) {  // bounded: drain what is queued, then return to the loop
    if (nl_recvmsgs(impl_->monitor.get(), cb.get()) < 0) break;
  }
  return changed;
}

DriverResult<std::unique_ptr<PoeDriver>> make_driver(const config::SiteConfig& cfg, Clock clock) {
  std::vector<std::string> names;
  for (const auto& p : cfg.ports) names.push_back(p.name);
  if (cfg.poe.driver == "linux-pse") {
    auto d = LinuxPseDriver::open(std::move(names));
    if (!d) return unexpected(d.error());
    return std::unique_ptr<PoeDriver>(std::move(d.value()));
  }
  if (cfg.poe.driver == "sim") {
    SimOptions options;
    options.phase = std::chrono::milliseconds(50);
    // A fresh PSE comes up with its ports enabled, as kernel PSE controllers do; after that the
    // hardware file carries the state across daemon restarts.
    options.admin_enabled_at_power_up = true;
    options.hardware_file = std::filesystem::path(cfg.state_dir) / "poe-sim-hardware.json";
    return std::unique_ptr<PoeDriver>(SimDriver::from_config(cfg, std::move(clock), options));
  }
  return unexpected(DriverError{DriverErrorCode::Invalid, "unknown poe.driver: " + cfg.poe.driver, EINVAL});
}

}  // namespace ve::poe
