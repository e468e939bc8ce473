#pragma once
// Runs a Provisioner on loopback (ephemeral ports) on its own io thread, with a recording sink.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <random>
#include <thread>

#include "provision/provision.hpp"
#include "provision/tests/temp_dir.hpp"
#include "provision/tests/test_site.hpp"
#include "tests/support/process.hpp"

namespace ve::provision::testing {

class RecordingSink final : public EventSink {
 public:
  void report(PhoneEvent e) override {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(e));
  }
  std::vector<PhoneEvent> events() const {
    std::lock_guard lock(mutex_);
    return events_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<PhoneEvent> events_;
};

inline std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(gen() & 0xff);
  return s;
}

// Waits until `pred` holds (the server works on its own thread): tests/support's, polled every 20 ms.
using ve::test::eventually;

class ServerFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    root_.write("sip78xx.14-2-1-0001-14.loads", "<LOADS>kern78xx.14-2-1-0001-14.sbn</LOADS>");
    root_.write("kern78xx.14-2-1-0001-14.sbn", random_bytes(300 * 1024 + 7, 1));
    root_.write("dialplan.xml", "<DIALTEMPLATE>\n</DIALTEMPLATE>\n");
    root_.write("English_United_States/sp-sip.jar", random_bytes(20000, 2));
    root_.write("softkeys.xml", "<softKeyCfg/>");
    root_.write("Ringlist-wb.xml", "<CiscoIPPhoneRingList/>");
    root_.write("exact512.bin", random_bytes(1024, 3));
    outside_.write("secret.txt", "outside");
    std::filesystem::create_symlink(outside_.path() / "secret.txt", root_.path() / "escape.txt");
  }
  void TearDown() override { stop(); }

  void start(ProvisionerOptions options = {}) {
    options.tftp.listen = {"udp", "127.0.0.1", 0};
    options.http.listen = {"tcp", "127.0.0.1", 0};
    if (options.tftp.retransmit_timeout == std::chrono::milliseconds(1000))
      options.tftp.retransmit_timeout = std::chrono::milliseconds(300);
    site_ = make_site(root_.path().string());
    if (edit_site_) edit_site_(*site_);
    provisioner_ = std::make_unique<Provisioner>(io_, site_, options, sink_,
                                                 [this](const std::string& ip) -> std::optional<MacAddress> {
                                                   std::lock_guard lock(dhcp_mutex_);
                                                   if (auto it = dhcp_.find(ip); it != dhcp_.end()) return it->second;
                                                   return std::nullopt;
                                                 });
    auto started = provisioner_->start();
    ASSERT_TRUE(started) << started.error();
    thread_ = std::thread([this] { io_.run(); });
  }
  void stop() {
    if (!provisioner_) return;
    std::promise<void> done;
    boost::asio::post(io_, [&] {
      provisioner_->stop();
      done.set_value();
    });
    done.get_future().wait();
    work_.reset();
    io_.stop();
    if (thread_.joinable()) thread_.join();
    provisioner_.reset();
  }
  std::string content_of(const std::string& relative) const {
    std::ifstream in(root_.path() / relative, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::string generated(const std::string& name) const {
    auto f = provisioner_->tree()->open(name);
    return f ? to_string(*f->bytes) : std::string("<missing>");
  }
  void lease(const std::string& ip, const std::string& mac) {
    std::lock_guard lock(dhcp_mutex_);
    dhcp_[ip] = *MacAddress::parse(mac);
  }

  // Applied to the test site before start() (ip bindings, config_access).
  std::function<void(config::SiteConfig&)> edit_site_;
  TempDir root_;
  TempDir outside_;
  RecordingSink sink_;
  std::shared_ptr<config::SiteConfig> site_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_{io_.get_executor()};
  std::unique_ptr<Provisioner> provisioner_;
  std::thread thread_;
  std::mutex dhcp_mutex_;
  std::map<std::string, MacAddress> dhcp_;
};

}  // namespace ve::provision::testing
