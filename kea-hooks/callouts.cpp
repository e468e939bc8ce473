// The extern "C" surface Kea looks up in libdhcp_voiceedge.so: load/unload, the callouts and
// multi_threading_compatible. Nothing may escape into Kea: every entry point catches everything;
// load() turns a failure into a logged reason and return 1; callouts always return 0.
#include <hooks/hooks.h>
#include <process/daemon.h>

#include <memory>
#include <stdexcept>

#include "kea-hooks/impl.hpp"
#include "kea-hooks/log.hpp"

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
