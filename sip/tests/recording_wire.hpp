#pragma once
// What the proxy and registrar tests put in place of the network: a wire that records what the
// proxy sends (as the box at 10.0.0.1, UDP 5060 and TCP 5061) and a sink that records events.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "sip/proxy.hpp"
#include "ve/phone_event.hpp"

namespace ve::sip::test {

struct RecordingSink : EventSink {
  void report(PhoneEvent e) override { events.push_back(std::move(e)); }
  std::vector<PhoneEvent> events;
};

struct Sent {
  Destination to;
  std::string bytes;
  Message message() const {
    auto m = parse_message(bytes);
    EXPECT_TRUE(m) << bytes;
    return m ? *m : Message{};
  }
};

struct RecordingWire : Wire {
  void send(const Destination& to, const std::string& bytes) override { sent.push_back({to, bytes}); }
  std::string local_address(Transport t, const std::string&) const override {
    return t == Transport::Tcp ? "10.0.0.1:5061" : "10.0.0.1:5060";
  }
  bool is_local(std::string_view host, std::uint16_t port) const override {
    return host == "10.0.0.1" && (port == 5060 || port == 5061);
  }
  std::vector<Sent> sent;
};

}  // namespace ve::sip::test
