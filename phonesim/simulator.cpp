// The simulator: one io_context, one pcap handle demultiplexed by MAC, a fixed number of boots in
// flight (workers pulling the next phone), optional hold with refreshes, results as phones finish.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <ostream>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "phonesim/internal.hpp"

namespace ve::phonesim {

namespace {

using namespace detail;

MacAddress nth_mac(const MacAddress& first, int n) {
  std::uint64_t v = 0;
  for (auto b : first.bytes()) v = (v << 8) | b;
  v = (v + static_cast<std::uint64_t>(n)) & 0xffffffffffffULL;
  std::array<std::uint8_t, 6> out{};
  for (int i = 5; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v & 0xff);
    v >>= 8;
  }
  return MacAddress(out);
}

bool kernel_has_8021q() {
  std::error_code ec;
  return std::filesystem::exists("/proc/net/vlan/config", ec) || std::filesystem::exists("/sys/module/8021q", ec);
}

// Each phone holds a TCP connection while registered, plus HTTP/TFTP sockets while booting.
void raise_file_limit() {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &r);
  }
}

class Simulator {
 public:
  Simulator(const Options& options, std::ostream& out, std::ostream& err)
      : options_(options), out_(out), err_(err), link_(io_), signals_(io_, SIGINT, SIGTERM), main_signal_(io_) {}

  int run() {
    raise_file_limit();
    if (auto r = addresses_.open(options_.interface); !r) {
      err_ << "voiceedge-phonesim: " << r.error() << "\n";
      return 2;
    }
    addresses_.keep(options_.keep_addresses);
    shared_ = std::make_unique<Shared>(io_, options_, link_, addresses_);
    shared_->kernel_has_8021q = kernel_has_8021q();
    shared_->join_voice_vlan = [this](int vlan) { return join_voice_vlan(vlan); };
    voice_vlan_.keep(options_.keep_addresses);
    voice_addresses_.keep(options_.keep_addresses);
    shared_->on_boot_done = [this](const Phone& p) { boot_done(p); };
    shared_->on_control = [this](const nlohmann::json& event) { control_done(event); };
    for (int i = 0; i < options_.phones; ++i) {
      auto phone = std::make_unique<Phone>(*shared_, nth_mac(options_.first_mac, i));
      by_mac_.emplace(phone->mac(), phone.get());
      phones_.push_back(std::move(phone));
    }
    std::string error;
    if (!link_.open(
            options_.interface, [this](ByteView f) { on_frame(f); }, error)) {
      err_ << "voiceedge-phonesim: cannot capture on " << options_.interface << ": " << error << "\n";
      return 2;
    }
    signals_.async_wait([this](const error_code& ec, int) {
      if (!ec) interrupt();
    });
    shared_->start = Clock::now();
    asio::co_spawn(io_, main(), asio::detached);
    io_.run();
    return exit_code_;
  }

 private:
  asio::awaitable<void> main() {
    const int workers = std::min(options_.concurrency, options_.phones);
    workers_left_ = workers;
    for (int w = 0; w < workers; ++w) asio::co_spawn(io_, worker(), asio::detached);
    co_await wait_for([this] { return workers_left_ == 0; });
    if (options_.hold.count() > 0 && refreshers_ > 0) {
      asio::steady_timer hold(io_);
      hold.expires_after(options_.hold);
      error_code ec;
      co_await hold.async_wait(token(ec));
      shared_->stopping = true;
      for (auto& p : phones_) p->wake();
      co_await wait_for([this] { return refreshers_ == 0; });
    }
    // A call placed near the end of the hold (or with no hold at all) is seen through.
    co_await wait_for([this] { return callers_ == 0; });
    finish(false);
  }

  asio::awaitable<void> worker() {
    while (next_ < static_cast<int>(phones_.size()) && !interrupted_) {
      Phone& phone = *phones_[static_cast<std::size_t>(next_++)];
      co_await phone.boot();
      if (phone.result().registered && options_.hold.count() > 0) {
        ++refreshers_;
        asio::co_spawn(io_, refresh(phone), asio::detached);
      }
      if (phone.result().registered && !options_.call.empty()) {
        ++callers_;
        asio::co_spawn(io_, call(phone), asio::detached);
      }
    }
    --workers_left_;
    main_signal_.cancel();
  }

  asio::awaitable<void> call(Phone& phone) {
    co_await phone.place_call();
    --callers_;
    main_signal_.cancel();
  }

  asio::awaitable<void> refresh(Phone& phone) {
    co_await phone.keep_registered();
    --refreshers_;
    main_signal_.cancel();
  }

  template <typename Pred>
  asio::awaitable<void> wait_for(Pred done) {
    while (!done()) {
      error_code ec;
      main_signal_.expires_after(std::chrono::hours(24));
      co_await main_signal_.async_wait(token(ec));
    }
  }

  // --tag-voice-vlan, the first phone that learns a voice VLAN: DHCP, the leased addresses and
  // with them TFTP, HTTP and SIP move to <interface>.<vlan>. All phones of one simulator share the
  // switch port, so they share its voice VLAN.
  Result<void, std::string> join_voice_vlan(int vlan) {
    if (voice_vlan_.is_open()) {
      if (voice_vlan_.vid() == vlan) return {};
      return unexpected(fmt::format("the phones already tag VLAN {} on {}", voice_vlan_.vid(), voice_vlan_.name()));
    }
    if (!shared_->kernel_has_8021q) return unexpected(std::string("this kernel has no 802.1Q support (module 8021q)"));
    if (auto r = voice_vlan_.open(options_.interface, vlan); !r) return r;
    if (auto r = voice_addresses_.open(voice_vlan_.name()); !r) return r;
    std::string error;
    if (!voice_link_.open(
            voice_vlan_.name(), [this](ByteView f) { on_voice_frame(f); }, error))
      return unexpected(fmt::format("cannot capture on {}: {}", voice_vlan_.name(), error));
    shared_->ip_link = &voice_link_;
    shared_->ip_addresses = &voice_addresses_;
    shared_->ip_interface = voice_vlan_.name();
    return {};
  }

  // On the voice VLAN only DHCP replies matter (the switch's CDP comes untagged).
  void on_voice_frame(ByteView f) {
    if (f.size() >= 6 && std::equal(cdp::kCdpMulticast.begin(), cdp::kCdpMulticast.end(), f.begin())) return;
    on_dhcp_frame(f);
  }

  void on_frame(ByteView f) {
    if (f.size() >= 6 && std::equal(cdp::kCdpMulticast.begin(), cdp::kCdpMulticast.end(), f.begin())) {
      auto decoded = cdp::decode_cdp(f);
      if (!decoded) {
        if (decoded.error() != cdp::DecodeError::WrongProtocol) ++shared_->malformed_frames;
        return;
      }
      if (by_mac_.count(decoded->source)) return;  // another simulated phone, not the switch
      shared_->last_cdp = std::move(decoded.value());
      ++shared_->cdp_seq;
      for (Phone* p : shared_->cdp_waiters) p->wake();
      return;
    }
    // Tagging: a reply seen on the untagged interface is not for the phones (they are on the voice
    // VLAN now; the copy of a tagged one arrives on the VLAN link as well).
    if (voice_vlan_.is_open()) return;
    on_dhcp_frame(f);
  }

  void on_dhcp_frame(ByteView f) {
    auto reply = decode_dhcp_frame(f);
    if (!reply) {
      ++shared_->malformed_frames;
      return;
    }
    auto it = by_mac_.find(reply->chaddr);
    if (it == by_mac_.end()) {
      ++shared_->foreign_dhcp;
      return;
    }
    it->second->on_dhcp(std::move(reply.value()));
  }

  void boot_done(const Phone& p) {
    done_.push_back(&p.result());
    // With a hold, the final line is printed at the end (it carries the refresh counts); the
    // boot result is printed now so a watcher sees progress.
    print(p.result());
  }

  // A service-control NOTIFY and what the phone did: printed at once, for a watcher.
  void control_done(const nlohmann::json& event) {
    if (options_.json) {
      out_ << event.dump() << "\n";
    } else {
      const auto& c = event["control"];
      std::string line = fmt::format("{} service-control {}: ", c.value("mac", ""), c.value("action", ""));
      if (c.contains("registered"))
        line += fmt::format("{} {}, {}", c["registered"].get<bool>() ? "re-registered after" : "FAILED after",
                            c.value("action", ""), c.value("config_file", ""));
      else
        line += c["answered"].is_null() ? c.value("detail", "") : fmt::format("answered {}", c["answered"].dump());
      out_ << line << "\n";
    }
    out_.flush();
  }

  void print(const PhoneResult& r) {
    if (options_.json) {
      out_ << result_json(r) << "\n";
    } else {
      out_ << result_line(r, options_.verbose) << "\n";
    }
    out_.flush();
  }

  std::string tagging_note() const {
    std::set<int> vlans;
    for (const auto* r : done_) {
      if (r->voice_vlan) vlans.insert(*r->voice_vlan);
    }
    std::string learned = vlans.empty() ? "none learned" : fmt::format("learned {}", fmt::join(vlans, ","));
    if (options_.expect_vlan) learned += fmt::format(" (expected {})", *options_.expect_vlan);
    if (voice_vlan_.is_open()) return learned + fmt::format("; frames sent tagged over {}", voice_vlan_.name());
    if (options_.tag_voice_vlan) return learned + "; --tag-voice-vlan: no voice VLAN to tag";
    return learned + (shared_->kernel_has_8021q ? "; frames sent untagged (the simulator does not tag)"
                                                : "; kernel has no 802.1Q support: frames sent untagged");
  }

  void finish(bool interrupted) {
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - shared_->start);
    const bool held = options_.hold.count() > 0;
    auto summary = summary_json(done_, options_.phones, elapsed, held, interrupted, tagging_note());
    if (held && !options_.json) {
      // Refresh outcome per phone that held a registration.
      for (const auto* r : done_) {
        if (r->registered) {
          out_ << fmt::format("{} refreshes ok {} failed {}, lease renewals ok {} failed {}{}\n", r->mac.sep_name(),
                              r->refresh_ok, r->refresh_failed, r->lease_renewed, r->lease_renew_failed,
                              r->registered_at_end ? "" : " - NOT registered at the end");
        }
      }
    }
    if (held && options_.json) {
      for (const auto* r : done_) {
        if (r->registered) {
          out_ << nlohmann::json{{"refresh",
                                  {{"mac", r->mac.to_string()},
                                   {"ok", r->refresh_ok},
                                   {"failed", r->refresh_failed},
                                   {"lease_renewed", r->lease_renewed},
                                   {"lease_renew_failed", r->lease_renew_failed},
                                   {"registered_at_end", r->registered_at_end}}}}
                      .dump()
               << "\n";
        }
      }
    }
    for (const auto* r : done_) {
      if (r->calls.empty()) continue;
      if (options_.json) {
        out_ << nlohmann::json{{"calls", {{"mac", r->mac.to_string()}, {"calls", calls_json(r->calls)}}}}.dump()
             << "\n";
      } else {
        for (const auto& c : r->calls) out_ << r->mac.sep_name() << " " << call_line(c) << "\n";
      }
    }
    out_ << (options_.json ? summary.dump() : summary_text(summary)) << "\n";
    out_.flush();
    const auto& s = summary["summary"];
    exit_code_ = (s["registered"].get<int>() == options_.phones && s["not_registered_at_end"].get<int>() == 0) ? 0 : 1;
    // --call: every phone's placed call must have gone the whole way (2xx, BYE answered 200).
    if (!options_.call.empty()) {
      for (const auto* r : done_) {
        if (!r->registered) continue;
        const bool completed = std::any_of(r->calls.begin(), r->calls.end(), [](const CallRecord& c) {
          return c.direction == CallDirection::Placed && call_completed(c);
        });
        if (!completed) exit_code_ = 1;
      }
    }
    // The readers of the call manager connections would keep the io_context running.
    for (auto& p : phones_) p->hang_up_line();
    link_.close();
    voice_link_.close();
    error_code ignored;
    signals_.cancel(ignored);
    main_signal_.cancel();
  }

  void interrupt() {
    interrupted_ = true;
    // Coroutines are mid-flight on sockets that would take seconds to unwind: report what is
    // known, remove the addresses we added, and leave.
    finish(true);
    if (!options_.keep_addresses) {
      addresses_.remove_all();
      voice_vlan_.remove();  // its addresses go with it
    }
    out_.flush();
    std::_Exit(130);
  }

  const Options& options_;
  std::ostream& out_;
  std::ostream& err_;
  asio::io_context io_;
  AddressTable addresses_;
  RawLink link_;
  // Declared before what lives on it: destroyed last, after its addresses and capture.
  VlanLink voice_vlan_;
  AddressTable voice_addresses_;
  RawLink voice_link_{io_};
  asio::signal_set signals_;
  asio::steady_timer main_signal_;
  std::unique_ptr<Shared> shared_;
  std::vector<std::unique_ptr<Phone>> phones_;
  std::map<MacAddress, Phone*> by_mac_;
  std::vector<const PhoneResult*> done_;
  int next_ = 0;
  int workers_left_ = 0;
  int refreshers_ = 0;
  int callers_ = 0;
  bool interrupted_ = false;
  int exit_code_ = 1;
};

}  // namespace

int run(const Options& options, std::ostream& out, std::ostream& err) {
  if (options.interface.empty()) {
    err << "voiceedge-phonesim: --interface is required\n";
    return 2;
  }
  if (options.phones < 1 || options.concurrency < 1) {
    err << "voiceedge-phonesim: --phones and --concurrency must be at least 1\n";
    return 2;
  }
  Simulator sim(options, out, err);
  return sim.run();
}

}  // namespace ve::phonesim
