// Kea-facing half of the hook: reads Kea's packets and leases, uses the pure codec to decide, and
// writes options back into the response.
#include <chrono>
#include "kea-hooks/impl.hpp"

#include <dhcp/dhcp4.h>
#include <dhcp/hwaddr.h>
#include <dhcp/option4_addrlst.h>
#include <dhcp/option_int.h>
#include <dhcp/option_int_array.h>
#include <dhcp/option_string.h>
#include <dhcp/pkt4.h>
#include <dhcpsrv/lease.h>

#include <boost/make_shared.hpp>

#include <stdexcept>

#include "kea-hooks/log.hpp"

namespace ve::kea_hooks {

// The hook speaks dhcp/'s vocabulary (LeaseReport, PhoneMatcher, the option codes...).
using namespace ve::dhcp;

namespace {

using isc::dhcp::Lease4Ptr;
using isc::dhcp::OptionPtr;
using isc::dhcp::Pkt4Ptr;
using isc::hooks::CalloutHandle;

// The first option `code` of a packet, read in place. Pkt::getOption() would deep-copy it (and
// swap the copy into the packet): Kea turns that on around callouts so that a library editing an
// option cannot change the server's configured one, and this hook only reads. The collection is
// a public member of Kea's Pkt for exactly such direct use.
const isc::dhcp::Option* find_option(const isc::dhcp::Pkt4& pkt, std::uint16_t code) {
  const auto it = pkt.options_.find(code);
  return it == pkt.options_.end() ? nullptr : it->second.get();
}

// An option's payload without copying it where Kea keeps it as bytes (options 60 and 12 arrive as
// OptionString, whose value is its data; 55 as a uint8 array). Anything else, such as a site's
// own option-def for the code, is serialised into `scratch`. Valid while the packet is.
std::span<const std::uint8_t> option_view(const isc::dhcp::Pkt4& pkt, std::uint16_t code,
                                          std::vector<std::uint8_t>& scratch) {
  const auto* opt = find_option(pkt, code);
  if (opt == nullptr) return {};
  if (opt->getOptions().empty() && !opt->getData().empty()) return opt->getData();
  if (const auto* array = dynamic_cast<const isc::dhcp::OptionUint8Array*>(opt)) return array->getValues();
  scratch = opt->toBinary(false);
  return scratch;
}

std::uint32_t lease_time_of(const isc::dhcp::Pkt4& response) {
  const auto* opt = find_option(response, isc::dhcp::DHO_DHCP_LEASE_TIME);
  if (opt == nullptr) return 0;
  if (const auto* value = dynamic_cast<const isc::dhcp::OptionUint32*>(opt)) return value->getValue();
  const auto bytes = opt->toBinary(false);
  if (bytes.size() != 4) return 0;
  return (std::uint32_t{bytes[0]} << 24) | (std::uint32_t{bytes[1]} << 16) | (std::uint32_t{bytes[2]} << 8) | bytes[3];
}

std::optional<MacAddress> client_mac(const isc::dhcp::HWAddrPtr& hw) {
  if (!hw || hw->hwaddr_.size() != 6) return std::nullopt;
  std::array<std::uint8_t, 6> b{};
  std::copy(hw->hwaddr_.begin(), hw->hwaddr_.end(), b.begin());
  return MacAddress(b);
}

std::uint32_t v4(const isc::asiolink::IOAddress& a) { return a.isV4() ? a.toUint32() : 0; }

std::string prefix_text(const config::Subnet& s) {
  return format_ipv4(s.prefix.network.value) + "/" + std::to_string(s.prefix.length);
}

config::SiteConfigPtr load_site(const std::string& path) {
  if (path.empty()) throw std::runtime_error("parameter 'site-file' (string) is required");
  auto loaded = config::load_file(path);
  if (!loaded) {
    std::string why = "site file " + path + " is invalid:";
    const auto& errors = loaded.error();
    for (std::size_t i = 0; i < errors.size() && i < 5; ++i) why += " " + errors[i].to_string() + ";";
    if (errors.size() > 5) why += " (" + std::to_string(errors.size() - 5) + " more)";
    throw std::runtime_error(why);
  }
  return std::move(loaded).value();
}

}  // namespace

HookImpl::HookImpl(const HookParameters& params)
    : site_(load_site(params.site_file)),
      matcher_(site_->dhcp.phone_match, site_->phones),
      reporter_(params.event_socket.empty() ? site_->dhcp.kea.event_socket : params.event_socket,
                LeaseReporter::Options{}, [this](const LeaseReport& r, const char* why) {
                  LOG_DEBUG(hook_logger, kDebugPacket, VOICEEDGE_REPORT_DROPPED)
                      .arg(std::string(to_string(r.kind)))
                      .arg(r.mac.to_string())
                      .arg(reporter_.path())
                      .arg(std::string(why));
                }) {}

void HookImpl::on_pkt4_send(CalloutHandle& handle) {
  // Another library dropped or took over this response: leave it alone.
  if (handle.getStatus() != CalloutHandle::NEXT_STEP_CONTINUE) return;
  Pkt4Ptr response;
  Pkt4Ptr query;
  handle.getArgument("response4", response);
  handle.getArgument("query4", query);
  if (!response || !query) return;
  const auto type = response->getType();
  if (type != isc::dhcp::DHCPOFFER && type != isc::dhcp::DHCPACK) return;

  const auto mac = client_mac(query->getHWAddr());
  std::vector<std::uint8_t> vendor_scratch, prl_scratch, hostname_scratch;
  const auto vendor_class = option_view(*query, kOptionVendorClass, vendor_scratch);
  const auto prl = option_view(*query, kOptionPrl, prl_scratch);
  const auto reason = matcher_.classify(mac, vendor_class);

  // The subnet Kea selected is the one the address it assigned lies in (ciaddr for an INFORM).
  // Kea's Subnet4 object itself cannot be used: Debian's kea-dev 2.2 lacks
  // dhcpsrv/cfg_globals.h, so dhcpsrv/subnet.h does not compile outside Kea's tree.
  const std::uint32_t address = v4(response->getYiaddr()) != 0 ? v4(response->getYiaddr()) : v4(query->getCiaddr());
  const config::Subnet* subnet = address != 0 ? find_subnet_containing(site_->dhcp.subnets, address) : nullptr;

  // What the debug lines print is built only when Kea logs them (most of a DORA's cost otherwise).
  const bool debug = hook_logger.isDebugEnabled(kDebugPacket);
  const auto mac_text = [&]() -> std::string {
    return mac ? mac->to_string() : response->getHWAddr() ? response->getHWAddr()->toText(false) : "?";
  };
  if (reason != PhoneReason::NotPhone) {
    const auto options = build_phone_options(reason, RequestedOptions::parse(prl), subnet);
    if (subnet == nullptr) {
      LOG_DEBUG(hook_logger, kDebugPacket, VOICEEDGE_PHONE_NO_SUBNET)
          .arg(mac_text())
          .arg(std::string(to_string(reason)))
          .arg(format_ipv4(address));
    } else if (!options.empty()) {
      std::string list;
      if (!options.tftp_servers.empty()) {
        isc::dhcp::Option4AddrLst::AddressContainer addrs;
        for (auto s : options.tftp_servers) {
          addrs.push_back(isc::asiolink::IOAddress(s));
          if (debug) list += (list.empty() ? "" : ",") + format_ipv4(s);
        }
        response->delOption(kOptionTftpServers);
        response->addOption(boost::make_shared<isc::dhcp::Option4AddrLst>(kOptionTftpServers, addrs));
      }
      if (options.tftp_server_name) {
        response->delOption(kOptionTftpServerName);
        response->addOption(boost::make_shared<isc::dhcp::OptionString>(isc::dhcp::Option::V4, kOptionTftpServerName,
                                                                        *options.tftp_server_name));
      }
      LOG_DEBUG(hook_logger, kDebugPacket, VOICEEDGE_PHONE_OPTIONS)
          .arg(mac_text())
          .arg(std::string(to_string(reason)))
          .arg(prefix_text(*subnet))
          .arg(list)
          .arg(options.tftp_server_name.value_or("-"));
    }
  }

  if (!mac || v4(response->getYiaddr()) == 0) return;  // an INFORM answer is not a lease
  LeaseReport r;
  r.kind = type == isc::dhcp::DHCPOFFER ? LeaseEventKind::Offer : LeaseEventKind::Ack;
  r.mac = *mac;
  r.ip = v4(response->getYiaddr());
  r.subnet = subnet != nullptr ? prefix_text(*subnet) : std::string{};
  r.hostname = printable(option_view(*query, kOptionHostname, hostname_scratch));
  r.vendor_class = printable(vendor_class);
  r.phone = reason;
  r.lifetime_s = lease_time_of(*response);
  report(r);
}

namespace {

// Fills a report from a lease (release, decline, expire) and, when there is one, the query.
LeaseReport report_from_lease(LeaseEventKind kind, const isc::dhcp::Lease4& lease, const Pkt4Ptr& query,
                              const PhoneMatcher& matcher, const std::vector<config::Subnet>& subnets) {
  LeaseReport r;
  r.kind = kind;
  auto mac = client_mac(lease.hwaddr_);
  if (!mac && query) mac = client_mac(query->getHWAddr());
  if (mac) r.mac = *mac;
  r.ip = v4(lease.addr_);
  if (const auto* subnet = find_subnet_containing(subnets, r.ip)) r.subnet = prefix_text(*subnet);
  r.hostname = printable(lease.hostname_);
  std::vector<std::uint8_t> scratch;
  const auto vendor_class = query ? option_view(*query, kOptionVendorClass, scratch) : std::span<const std::uint8_t>{};
  r.vendor_class = printable(vendor_class);
  r.phone = matcher.classify(mac, vendor_class);
  return r;
}

}  // namespace

void HookImpl::on_lease4_release(CalloutHandle& handle) {
  Pkt4Ptr query;
  Lease4Ptr lease;
  handle.getArgument("query4", query);
  handle.getArgument("lease4", lease);
  if (lease) report(report_from_lease(LeaseEventKind::Release, *lease, query, matcher_, site_->dhcp.subnets));
}

void HookImpl::on_lease4_decline(CalloutHandle& handle) {
  Pkt4Ptr query;
  Lease4Ptr lease;
  handle.getArgument("query4", query);
  handle.getArgument("lease4", lease);
  if (lease) report(report_from_lease(LeaseEventKind::Decline, *lease, query, matcher_, site_->dhcp.subnets));
}

void HookImpl::on_lease4_expire(CalloutHandle& handle) {
  Lease4Ptr lease;
  handle.getArgument("lease4", lease);
  if (lease) report(report_from_lease(LeaseEventKind::Expire, *lease, nullptr, matcher_, site_->dhcp.subnets));
}

void HookImpl::report(LeaseReport r) {
  if (r.mac.is_zero()) return;  // nothing to key it on
  r.time_ms = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  if (!reporter_.send(r)) {
    LOG_DEBUG(hook_logger, kDebugPacket, VOICEEDGE_REPORT_DROPPED)
        .arg(std::string(to_string(r.kind)))
        .arg(r.mac.to_string())
        .arg(reporter_.path())
        .arg(std::string("the hook's queue is full"));
  }
}

}  // namespace ve::kea_hooks
