// Opens the built libdhcp_voiceedge.so through Kea's own HooksManager, the way kea-dhcp4 does,
// and drives its callouts with Kea packet and lease objects.
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cc/data.h>
#include <dhcp/dhcp4.h>
#include <dhcp/hwaddr.h>
#include <dhcp/option.h>
#include <dhcp/option_string.h>
#include <dhcp/option_int_array.h>
#include <dhcp/pkt4.h>
#include <dhcpsrv/lease.h>
#include <hooks/callout_handle.h>
#include <hooks/hooks_manager.h>
#include <log/logger_support.h>
#include <process/daemon.h>

#include <boost/make_shared.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "dhcp/codec.hpp"

namespace {

namespace fs = std::filesystem;
using namespace isc::dhcp;
using isc::data::Element;
using isc::hooks::CalloutHandlePtr;
using isc::hooks::HooksManager;

struct HookIndexes {
  int pkt4_send = HooksManager::registerHook("pkt4_send");
  int lease4_release = HooksManager::registerHook("lease4_release");
  int lease4_decline = HooksManager::registerHook("lease4_decline");
  int lease4_expire = HooksManager::registerHook("lease4_expire");
};

class HookLoad : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ve-hookload-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    site_ = dir_ / "site.yaml";
    std::ofstream(site_) << "site: { name: t }\nstate_dir: " << dir_.string() << "\n"
                         << "ports:\n  - name: eth1\n    voice_vlan: 100\n    data_vlan: 10\n"
                         << "dhcp:\n  kea:\n    event_socket: " << (dir_ / "ev.sock").string() << "\n"
                         << "  subnets:\n    - vlan: 100\n      interface: eth1\n      prefix: 10.10.100.0/24\n"
                         << "      pool: 10.10.100.100-10.10.100.199\n      router: 10.10.100.1\n"
                         << "      tftp_servers: [10.10.100.1, 10.10.100.2]\n";
    isc::process::Daemon::setProcName("kea-dhcp4");
  }
  void TearDown() override {
    HooksManager::prepareUnloadLibraries();
    EXPECT_TRUE(HooksManager::unloadLibraries());
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  bool load(isc::data::ElementPtr params) {
    isc::hooks::HookLibsCollection libs;
    libs.push_back({VE_HOOK_LIBRARY, params});
    return HooksManager::loadLibraries(libs);
  }
  isc::data::ElementPtr good_params() {
    auto p = Element::createMap();
    p->set("site-file", Element::create(site_.string()));
    return p;
  }

  static Pkt4Ptr query(uint8_t type, const std::string& vendor_class, std::vector<uint8_t> prl) {
    auto q = boost::make_shared<Pkt4>(type, 1234);
    q->setHWAddr(HWTYPE_ETHERNET, 6, {0x00, 0xaa, 0xbb, 0x00, 0x00, 0x01});
    if (!vendor_class.empty())
      q->addOption(boost::make_shared<OptionString>(Option::V4, DHO_VENDOR_CLASS_IDENTIFIER, vendor_class));
    if (!prl.empty())
      q->addOption(boost::make_shared<Option>(Option::V4, DHO_DHCP_PARAMETER_REQUEST_LIST, OptionBuffer(prl)));
    return q;
  }

  Pkt4Ptr send_response(const Pkt4Ptr& q, uint8_t type) {
    auto response = boost::make_shared<Pkt4>(type, 1234);
    response->setYiaddr(isc::asiolink::IOAddress("10.10.100.100"));
    CalloutHandlePtr handle = HooksManager::createCalloutHandle();
    handle->setArgument("query4", q);
    handle->setArgument("response4", response);
    HooksManager::callCallouts(hooks_.pkt4_send, *handle);
    EXPECT_EQ(handle->getStatus(), isc::hooks::CalloutHandle::NEXT_STEP_CONTINUE);
    return response;
  }

  static HookIndexes hooks_;
  fs::path dir_;
  fs::path site_;
};
HookIndexes HookLoad::hooks_;

TEST_F(HookLoad, LoadsAndRegistersItsCallouts) {
  ASSERT_TRUE(load(good_params()));
  EXPECT_TRUE(HooksManager::calloutsPresent(hooks_.pkt4_send));
  EXPECT_TRUE(HooksManager::calloutsPresent(hooks_.lease4_release));
  EXPECT_TRUE(HooksManager::calloutsPresent(hooks_.lease4_decline));
  EXPECT_TRUE(HooksManager::calloutsPresent(hooks_.lease4_expire));
}

TEST_F(HookLoad, Pkt4SendAddsOption150And66ForAPhone) {
  ASSERT_TRUE(load(good_params()));
  auto response =
      send_response(query(DHCPDISCOVER, "Cisco Systems, Inc. IP Phone CP-7841", {1, 3, 66, 150}), DHCPOFFER);
  auto o150 = response->getOption(150);
  ASSERT_TRUE(o150);
  EXPECT_EQ(o150->toBinary(false), (std::vector<uint8_t>{10, 10, 100, 1, 10, 10, 100, 2}));
  auto o66 = response->getOption(DHO_TFTP_SERVER_NAME);
  ASSERT_TRUE(o66);
  const auto text = o66->toBinary(false);
  EXPECT_EQ(std::string(text.begin(), text.end()), "10.10.100.1");
}

TEST_F(HookLoad, Pkt4SendLeavesALaptopAlone) {
  ASSERT_TRUE(load(good_params()));
  auto response = send_response(query(DHCPDISCOVER, "MSFT 5.0", {1, 3, 66, 150}), DHCPOFFER);
  EXPECT_FALSE(response->getOption(150));
  EXPECT_FALSE(response->getOption(DHO_TFTP_SERVER_NAME));
}

TEST_F(HookLoad, ReleaseDeclineAndExpireAreReportedToTheEventSocket) {
  const auto ev = (dir_ / "ev.sock").string();
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, ev.c_str(), sizeof(a.sun_path) - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_TRUE(load(good_params()));

  struct Case {
    int hook;
    bool with_query;
    ve::dhcp::LeaseEventKind kind;
  };
  for (const auto& c : {Case{hooks_.lease4_release, true, ve::dhcp::LeaseEventKind::Release},
                        Case{hooks_.lease4_decline, true, ve::dhcp::LeaseEventKind::Decline},
                        Case{hooks_.lease4_expire, false, ve::dhcp::LeaseEventKind::Expire}}) {
    SCOPED_TRACE(std::string(ve::dhcp::to_string(c.kind)));
    auto hw = boost::make_shared<HWAddr>(std::vector<uint8_t>{0x00, 0xaa, 0xbb, 0x00, 0x00, 0x09}, HTYPE_ETHER);
    auto lease = boost::make_shared<Lease4>(isc::asiolink::IOAddress("10.10.100.150"), hw, nullptr, 0, 3600, 0, 1);
    CalloutHandlePtr handle = HooksManager::createCalloutHandle();
    if (c.with_query) handle->setArgument("query4", query(DHCPRELEASE, "", {}));
    handle->setArgument("lease4", lease);
    if (!c.with_query) handle->setArgument("remove_lease", false);
    HooksManager::callCallouts(c.hook, *handle);

    // The hook's sender thread delivers it just after the callout returned.
    pollfd p{fd, POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 5000), 1);
    char buf[4096];
    const auto n = ::recv(fd, buf, sizeof(buf), 0);
    ASSERT_GT(n, 0);
    auto r = ve::dhcp::decode_lease_report(std::span(reinterpret_cast<const uint8_t*>(buf), static_cast<size_t>(n)));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->kind, c.kind);
    EXPECT_EQ(r->mac.to_string(), "00:aa:bb:00:00:09");
    EXPECT_EQ(ve::format_ipv4(r->ip), "10.10.100.150");
    EXPECT_EQ(r->subnet, "10.10.100.0/24");
  }
  ::close(fd);
}

TEST_F(HookLoad, CalloutWithMissingArgumentsIsCaughtNotThrown) {
  ASSERT_TRUE(load(good_params()));
  CalloutHandlePtr handle = HooksManager::createCalloutHandle();  // no query4/response4 at all
  EXPECT_NO_THROW(HooksManager::callCallouts(hooks_.pkt4_send, *handle));
  EXPECT_EQ(handle->getStatus(), isc::hooks::CalloutHandle::NEXT_STEP_CONTINUE);
}

TEST_F(HookLoad, RefusesToLoadWithoutASiteFile) {
  EXPECT_FALSE(load(Element::createMap()));
  EXPECT_FALSE(HooksManager::calloutsPresent(hooks_.pkt4_send));
}

TEST_F(HookLoad, RefusesToLoadAnInvalidSiteFile) {
  std::ofstream(site_) << "site: { name: t }\nstate_dir: relative\n";
  EXPECT_FALSE(load(good_params()));
}

TEST_F(HookLoad, RefusesToLoadIntoTheWrongServer) {
  isc::process::Daemon::setProcName("kea-dhcp6");
  EXPECT_FALSE(load(good_params()));
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  isc::log::initLogger();  // Kea's logging must exist before a library logs through it
  return RUN_ALL_TESTS();
}
