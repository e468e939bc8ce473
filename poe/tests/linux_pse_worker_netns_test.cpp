// The manager with its PSE worker over the kernel's ethtool netlink (linux-pse), as the daemon
// runs it: the netlink sockets opened on this thread serve requests on the worker thread, results
// come back through the caller's queue. lo has no PSE, so the answers are "no PSE attached".
#include <gtest/gtest.h>

#include "poe/poe.hpp"
#include "poe/tests/test_support.hpp"
#include "poe/tests/worker_loop.hpp"

namespace ve::poe {
namespace {

TEST(LinuxPseWorker, RequestsRunOnTheWorkerAndTheirResultsComeBackToTheCaller) {
  auto d = LinuxPseDriver::open({"lo"});
  if (!d && d.error().code == DriverErrorCode::NotSupported) GTEST_SKIP() << "no ethtool generic netlink";
  ASSERT_TRUE(d) << d.error().message;
  testing::RecordingSink sink;
  testing::Loop loop;
  ManagerOptions options;
  options.post = loop.poster();
  Manager mgr(*d.value(), sink, testing::make_config({{"lo"}}, 370), steady_clock_now(), options);
  mgr.start();  // synchronous: lo is known to have no PSE before anything is queued
  EXPECT_EQ(mgr.port("lo")->oper, Oper::NoPse);

  mgr.poll();
  EXPECT_EQ(mgr.pending_requests(), 1u) << "the read went to the worker";
  ASSERT_TRUE(loop.drain(mgr));
  EXPECT_EQ(mgr.port("lo")->oper, Oper::NoPse);
  EXPECT_EQ(mgr.negotiate("lo", 12900), 0u);

  bool applied = false;
  ASSERT_TRUE(mgr.set_mode("lo", config::PoeMode::Static, [&] { applied = true; }));
  EXPECT_FALSE(applied) << "not before the PSE has answered";
  ASSERT_TRUE(loop.drain(mgr));
  EXPECT_TRUE(applied);
  EXPECT_EQ(mgr.port("lo")->oper, Oper::NoPse) << mgr.port("lo")->detail;
  EXPECT_TRUE(sink.events.empty()) << "no phone events for a port without PSE";
}

}  // namespace
}  // namespace ve::poe
