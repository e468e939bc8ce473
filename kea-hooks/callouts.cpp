// The extern "C" surface Kea looks up in libdhcp_voiceedge.so: load/unload, the callouts and
// multi_threading_compatible. Nothing may escape into Kea: every entry point catches everything;
// load() turns a failure into a logged reason and return 1; callouts always return 0.
#include <dhcp/iface_mgr.h>
#include <hooks/hooks.h>
#include <process/daemon.h>

#include <algorithm>
#include <memory>
#include <stdexcept>

#include "kea-hooks/impl.hpp"
#include "kea-hooks/log.hpp"
#include "kea-hooks/receive_buffer.hpp"
#include "kea-hooks/vlan_guard.hpp"

namespace ve::kea_hooks {
namespace {

// Kea's C entry points carry no user pointer, so the library instance lives here, created by
// load() and destroyed by unload(). Kea never runs callouts concurrently with load/unload.
std::unique_ptr<HookImpl>& instance() {
  static std::unique_ptr<HookImpl> impl;
  return impl;
}

std::string string_parameter(isc::hooks::LibraryHandle& handle, const std::string& name) {
  auto value = handle.getParameter(name);
  if (!value) return {};
  if (value->getType() != isc::data::Element::string)
    throw std::runtime_error("parameter '" + name + "' must be a string");
  return value->stringValue();
}

void log_callout_error(const char* callout, const char* what) noexcept {
  try {
    LOG_ERROR(hook_logger, VOICEEDGE_CALLOUT_ERROR).arg(callout).arg(what);
  } catch (...) {  // logging itself failed: nothing more we can do without risking Kea
  }
}

template <typename Fn>
int run_callout(const char* name, isc::hooks::CalloutHandle& handle, Fn fn) noexcept {
  try {
    if (auto& impl = instance()) fn(*impl, handle);
  } catch (const std::exception& e) {
    log_callout_error(name, e.what());
  } catch (...) {
    log_callout_error(name, "unknown exception");
  }
  return 0;
}

// Every raw socket Kea has open gets the VLAN guard (vlan_guard.hpp) and, when the site asks for
// one, a larger receive buffer (receive_buffer.hpp). Kea closes and reopens its sockets on every
// (re)configuration, just before dhcp4_srv_configured, so this runs each time.
void tune_kea_sockets(int receive_buffer_bytes) {
  int guarded = 0;
  int sized = 0;
  int smallest = 0;
  std::string names;
  for (const auto& iface : isc::dhcp::IfaceMgr::instance().getIfaces()) {
    for (const auto& socket : iface->getSockets()) {
      std::string error;
      switch (guard_packet_socket(socket.sockfd_, error)) {
        case GuardOutcome::Guarded:
        case GuardOutcome::AlreadyGuarded:
          ++guarded;
          names += (names.empty() ? "" : ", ") + iface->getName();
          break;
        case GuardOutcome::NotAPacketSocket: continue;  // Kea's UDP sockets: no burst reaches them
        case GuardOutcome::Failed:
          LOG_ERROR(hook_logger, VOICEEDGE_VLAN_GUARD_FAILED).arg(iface->getName()).arg(error);
          break;
      }
      if (receive_buffer_bytes <= 0) continue;
      const auto buffer = raise_receive_buffer(socket.sockfd_, receive_buffer_bytes);
      if (!buffer.ok || buffer.bytes < receive_buffer_bytes) {
        LOG_WARN(hook_logger, VOICEEDGE_RECEIVE_BUFFER_SHORT)
            .arg(iface->getName())
            .arg(receive_buffer_bytes)
            .arg(buffer.error);
        if (!buffer.ok) continue;
      }
      ++sized;
      smallest = sized == 1 ? buffer.bytes : std::min(smallest, buffer.bytes);
    }
  }
  LOG_INFO(hook_logger, VOICEEDGE_VLAN_GUARD).arg(guarded).arg(names.empty() ? "none" : names);
  if (receive_buffer_bytes > 0) {
    LOG_INFO(hook_logger, VOICEEDGE_RECEIVE_BUFFER).arg(sized).arg(smallest).arg(names.empty() ? "none" : names);
  }
}

}  // namespace
}  // namespace ve::kea_hooks

using ve::kea_hooks::HookImpl;
using ve::kea_hooks::run_callout;

extern "C" {

int load(isc::hooks::LibraryHandle& handle) {
  using namespace ve::kea_hooks;
  try {
    // Only kea-dhcp4 has the packets and callouts this library handles.
    if (const auto proc = isc::process::Daemon::getProcName(); proc != "kea-dhcp4")
      throw std::runtime_error("this library is for kea-dhcp4, not '" + proc + "'");
    HookParameters params;
    params.site_file = string_parameter(handle, "site-file");
    params.event_socket = string_parameter(handle, "event-socket");
    auto impl = std::make_unique<HookImpl>(params);
    LOG_INFO(hook_logger, VOICEEDGE_LOAD_OK)
        .arg(params.site_file)
        .arg(impl->site().dhcp.subnets.size())
        .arg(impl->reporter().path());
    instance() = std::move(impl);
    return 0;
  } catch (const std::exception& e) {
    try {
      LOG_ERROR(hook_logger, VOICEEDGE_LOAD_ERROR).arg(e.what());
    } catch (...) {
    }
  } catch (...) {
    try {
      LOG_ERROR(hook_logger, VOICEEDGE_LOAD_ERROR).arg("unknown exception");
    } catch (...) {
    }
  }
  instance().reset();
  return 1;
}

int unload() {
  using namespace ve::kea_hooks;
  try {
    if (auto& impl = instance()) {
      impl->flush_reports();  // so the counts below are final
      LOG_INFO(hook_logger, VOICEEDGE_UNLOAD).arg(impl->reporter().sent()).arg(impl->reporter().dropped());
    }
  } catch (...) {
  }
  instance().reset();
  return 0;
}

// Callouts share only read-only state and a datagram socket (atomic sends): safe on many threads.
int multi_threading_compatible() { return 1; }

int dhcp4_srv_configured(isc::hooks::CalloutHandle&) {
  try {
    const auto& impl = ve::kea_hooks::instance();
    ve::kea_hooks::tune_kea_sockets(impl ? impl->site().dhcp.kea.socket_receive_buffer_kib * 1024 : 0);
  } catch (const std::exception& e) {
    ve::kea_hooks::log_callout_error("dhcp4_srv_configured", e.what());
  } catch (...) {
    ve::kea_hooks::log_callout_error("dhcp4_srv_configured", "unknown exception");
  }
  return 0;
}

int pkt4_send(isc::hooks::CalloutHandle& handle) {
  return run_callout("pkt4_send", handle, [](HookImpl& i, auto& h) { i.on_pkt4_send(h); });
}

int lease4_release(isc::hooks::CalloutHandle& handle) {
  return run_callout("lease4_release", handle, [](HookImpl& i, auto& h) { i.on_lease4_release(h); });
}

int lease4_decline(isc::hooks::CalloutHandle& handle) {
  return run_callout("lease4_decline", handle, [](HookImpl& i, auto& h) { i.on_lease4_decline(h); });
}

int lease4_expire(isc::hooks::CalloutHandle& handle) {
  return run_callout("lease4_expire", handle, [](HookImpl& i, auto& h) { i.on_lease4_expire(h); });
}

}  // extern "C"
