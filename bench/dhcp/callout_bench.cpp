// CPU cost of libdhcp_voiceedge.so per response: pkt4_send run through Kea's HooksManager on the
// built .so (as kea-dhcp4 calls it), for a phone OFFER (options 150/66 added, lease report sent)
// and a laptop OFFER (report only), plus the report encoding alone.
//   KEA_LOGGER_SEVERITY=INFO KEA_LOCKFILE_DIR=/tmp build/kea-hooks/kea_hooks_callout_bench --benchmark_repetitions=3
// (INFO as in production: with Kea's test default, DEBUG, every callout writes log lines.)
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <dhcp/dhcp4.h>
#include <dhcp/hwaddr.h>
#include <dhcp/option_string.h>
#include <dhcp/pkt4.h>
#include <hooks/callout_handle.h>
#include <hooks/hooks_manager.h>
#include <log/logger_support.h>
#include <process/daemon.h>

#include <boost/make_shared.hpp>

#include <filesystem>
#include <fstream>

#include "dhcp/codec.hpp"

namespace {

using namespace isc::dhcp;
using isc::hooks::HooksManager;

int pkt4_send_index() {
  static const int index = HooksManager::registerHook("pkt4_send");
  return index;
}

Pkt4Ptr make_query(const std::string& vendor_class) {
  auto q = boost::make_shared<Pkt4>(DHCPDISCOVER, 1234);
  q->setHWAddr(HTYPE_ETHER, 6, {0x00, 0xaa, 0xbb, 0x00, 0x00, 0x01});
  q->addOption(boost::make_shared<OptionString>(Option::V4, DHO_VENDOR_CLASS_IDENTIFIER, vendor_class));
  q->addOption(
      boost::make_shared<Option>(Option::V4, DHO_DHCP_PARAMETER_REQUEST_LIST, OptionBuffer{1, 3, 6, 15, 42, 66, 150}));
  return q;
}

void run_pkt4_send(benchmark::State& state, const std::string& vendor_class) {
  auto query = make_query(vendor_class);
  auto handle = HooksManager::createCalloutHandle();
  for (auto _ : state) {
    auto response = boost::make_shared<Pkt4>(DHCPOFFER, 1234);
    response->setYiaddr(isc::asiolink::IOAddress("10.10.100.100"));
    handle->setArgument("query4", query);
    handle->setArgument("response4", response);
    HooksManager::callCallouts(pkt4_send_index(), *handle);
    benchmark::DoNotOptimize(response->getOption(150));
  }
  handle->deleteAllArguments();
}

void BM_Pkt4SendPhone(benchmark::State& state) { run_pkt4_send(state, "Cisco Systems, Inc. IP Phone CP-7841"); }
void BM_Pkt4SendLaptop(benchmark::State& state) { run_pkt4_send(state, "MSFT 5.0"); }

void BM_EncodeLeaseReport(benchmark::State& state) {
  ve::dhcp::LeaseReport r;
  r.mac = *ve::MacAddress::parse("00:aa:bb:00:00:01");
  r.ip = 0x0a0a6464;
  r.subnet = "10.10.100.0/24";
  r.vendor_class = "Cisco Systems, Inc. IP Phone CP-7841";
  r.hostname = "SEP00AABB000001";
  r.phone = ve::dhcp::PhoneReason::VendorClass;
  r.lifetime_s = 3600;
  for (auto _ : state) benchmark::DoNotOptimize(ve::dhcp::encode_lease_report(r));
}

BENCHMARK(BM_Pkt4SendPhone);
BENCHMARK(BM_Pkt4SendLaptop);
BENCHMARK(BM_EncodeLeaseReport);

}  // namespace

int main(int argc, char** argv) {
  isc::log::initLogger();
  isc::process::Daemon::setProcName("kea-dhcp4");
  namespace fs = std::filesystem;
  const auto dir = fs::temp_directory_path() / ("ve-callout-bench-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "site.yaml")
      << "site: { name: b }\nstate_dir: " << dir.string() << "\n"
      << "ports:\n  - name: eth1\n    voice_vlan: 100\n    data_vlan: 10\n"
      << "dhcp:\n  kea:\n    event_socket: " << (dir / "nobody.sock").string() << "\n"
      << "  subnets:\n    - vlan: 100\n      interface: eth1\n      prefix: 10.10.100.0/24\n"
      << "      pool: 10.10.100.100-10.10.100.199\n      router: 10.10.100.1\n"
      << "      tftp_servers: [10.10.100.1, 10.10.100.2]\n";
  (void)pkt4_send_index();
  auto params = isc::data::Element::createMap();
  params->set("site-file", isc::data::Element::create((dir / "site.yaml").string()));
  if (!HooksManager::loadLibraries({{VE_HOOK_LIBRARY, params}})) return 1;
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  HooksManager::prepareUnloadLibraries();
  HooksManager::unloadLibraries();
  fs::remove_all(dir);
  return 0;
}
