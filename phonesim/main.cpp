// voiceedge-phonesim: simulated Cisco IP phones booting against a voiceedge box.
#include <iostream>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "phonesim/phonesim.hpp"

namespace {

constexpr const char* kDescription =
    "voiceedge-phonesim - simulated Cisco IP phones booting against a voiceedge box\n"
    "\n"
    "Runs N phones on one interface, each with its own MAC address, through the boot sequence of\n"
    "a real Cisco SIP phone (docs: phone-boot-sequence.md), in order:\n"
    "   1 power        the box's PoE (sim driver) powers the port; the phone proceeds\n"
    "   2 firmware     boots the image in its flash (--load)\n"
    "   3 voice-vlan   sends CDP (Device-ID SEP<MAC>, Platform \"Cisco IP Phone <model>\",\n"
    "                  VoIP VLAN Query, Power Requested) and learns the voice VLAN from the box's\n"
    "                  CDP (TLV 0x0e) and its Power Available\n"
    "   4 dhcp         DISCOVER/OFFER/REQUEST/ACK with raw frames from its own MAC (option 60\n"
    "                  \"Cisco Systems, Inc. IP Phone <model>\", option 55 with 150 and 66), then\n"
    "                  puts the leased address on the interface (/32 plus a route to the subnet)\n"
    "   5 ctl          CTLSEP<MAC>.tlv   (not found on a non-secure site: expected)\n"
    "   6 itl          ITLSEP<MAC>.tlv, ITLFile.tlv (same)\n"
    "   7 config       SEP<MAC>.cnf.xml, or XMLDefault.cnf.xml when the box does not know it\n"
    "   8 firmware-load  <loadInformation>.loads and the files it lists, when the config names a\n"
    "                  load other than --load\n"
    "   9 dial-rules   the config's dialTemplate\n"
    "  10 callmanager-connect  TCP to the call managers in priority order\n"
    "  11 register    REGISTER per line (Cisco-shaped Contact, +sip.instance, Reason with\n"
    "                  ActiveLoad), digest with the config's authName/authPassword, expects 200\n"
    "  12 locale       <userLocale>/<jar>, <networkLocale>/g3-tones.xml\n"
    "  13 softkeys     the config's softKeyFile\n"
    "  14 ringtones    Ringlist(-wb).xml, DistinctiveRingList.xml\n"
    "Downloads use HTTP port 6970 on the first option-150 server and fall back to TFTP per file;\n"
    "a server that does not answer at all is skipped for the next one in option 150.\n"
    "Credentials come from the phone's own config file, as on a real phone.\n"
    "\n"
    "CALLS\n"
    "A registered phone answers the calls the box forwards over its call manager connection:\n"
    "180 Ringing at once, then after --answer-after-ms 200 OK with an SDP answer (its Contact, a\n"
    "To tag, the Record-Route copied back), or 486 Busy Here with --busy. It takes the ACK,\n"
    "answers BYE with 200, CANCEL with 200 and the INVITE with 487, OPTIONS and NOTIFY with 200,\n"
    "other requests with 501.\n"
    "With --call EXT it also places one call, --call-after-s after it registered: INVITE\n"
    "sip:EXT@<call manager> with SDP over the same TCP connection; a 407 is ACKed and the INVITE\n"
    "sent again with Proxy-Authorization (the line's authName/authPassword, digest uri = the\n"
    "Request-URI); after the 200 the ACK and, --call-seconds later, the BYE go along the route\n"
    "set (Route headers from the reversed Record-Route, Request-URI = the callee's Contact).\n"
    "No media is sent. Only a --call makes the run wait for a call; answering needs --hold-s.\n"
    "\n"
    "PHONE CONTROL\n"
    "While it holds (--hold-s), a phone takes the call manager's NOTIFY with Event: service-control\n"
    "as a Cisco phone does: it answers 200 when the body's RegisterCallId is one of its\n"
    "registrations (481 otherwise, 400 without action=restart|reset), then action=restart fetches\n"
    "CTL/ITL/SEP<MAC>.cnf.xml again and registers its lines anew on a new connection, and\n"
    "action=reset reboots through every step from CDP on. --ignore-notify leaves the NOTIFY\n"
    "unanswered (a hung phone).";

constexpr const char* kFooter =
    "OUTPUT\n"
    "  One line per phone as its boot ends (registered, or FAILED with the step and the reason),\n"
    "  then a summary. With --json: one JSON object per line instead, a phone as\n"
    "    {\"mac\",\"name\",\"ip\",\"voice_vlan\",\"config_file\",\"registered\",\"registered_with\",\"lines\",\n"
    "     \"active_load\",\"inactive_load\",\"reached_step\",\"started_ms\",\"time_to_registered_ms\",\n"
    "     \"failed_step\",\"failure\",\"steps\":[{\"step\",\"name\",\"outcome\",\"detail\",\"at_ms\",\"ms\"}]}\n"
    "  then, with --hold-s, {\"refresh\":{\"mac\",\"ok\",\"failed\",\"registered_at_end\"}} per registered\n"
    "  phone, {\"calls\":{\"mac\",\"calls\":[{\"direction\",\"peer\",\"final_code\",\"reason\",\"ringing\",\n"
    "  \"answered\",\"ended_by\",\"bye_code\",\"setup_ms\",\"detail\"}]}} per phone that placed or\n"
    "  received a call (direction placed/received, ended_by caller/callee/null, setup_ms from the\n"
    "  INVITE to its final response), {\"control\":{\"mac\",\"action\",\"answered\",...}} when a\n"
    "  service-control NOTIFY came and again, with \"registered\" and \"config_file\", when the\n"
    "  restart or reset it asked for is over, and last {\"summary\":{...}}. Text output prints one\n"
    "  \"SEP... call placed to 1002: 200 OK in 40 ms, rang, answered, ended by the caller, BYE 200\"\n"
    "  line per call before the summary. Step outcomes: ok, expected (CTL/ITL not found on a\n"
    "  non-secure site), missing (an optional file is absent: recorded, not fatal), failed (the\n"
    "  phone stops there), skipped (the config names no such file).\n"
    "\n"
    "VLANS\n"
    "  The phones learn the voice VLAN over CDP. By default they go on sending untagged frames.\n"
    "  With --tag-voice-vlan they behave like a Cisco phone: once CDP names a voice VLAN (not 0, 1\n"
    "  or 4095) the simulator creates <interface>.<vlan> (kernel module 8021q; removed at exit) and\n"
    "  sends DHCP, TFTP, HTTP and SIP tagged over it; CDP stays untagged on the interface, and so\n"
    "  does whatever else uses the interface (a PC behind the phone). A kernel without 802.1Q fails\n"
    "  step 3 then. --expect-vlan makes a different VLAN a failure.\n"
    "\n"
    "EXIT STATUS\n"
    "  0  every phone registered (and, with --hold-s, was still registered at the end; with\n"
    "     --call, every phone's call was answered 200 and its BYE answered 200)\n"
    "  1  at least one phone failed, or with --call a placed call did not end with 200 + BYE 200\n"
    "     (the call is reported with its code and reason; the boot itself still counts as done)\n"
    "  2  bad command line, or the simulator could not run (interface, permissions)\n"
    "  130  interrupted (SIGINT/SIGTERM): results so far are printed, addresses removed\n"
    "\n"
    "NEEDS\n"
    "  root (or CAP_NET_RAW + CAP_NET_ADMIN): raw frames through libpcap, addresses over netlink.\n"
    "  Run it in the phones' network namespace, e.g. ip netns exec phones voiceedge-phonesim ...\n"
    "\n"
    "EXAMPLES\n"
    "  voiceedge-phonesim --interface veth-phones --phones 3 --first-mac 00:11:22:33:44:55\n"
    "  voiceedge-phonesim -i veth-phones -n 1000 --concurrency 200 --json > storm.jsonl\n"
    "  voiceedge-phonesim -i veth-phones -n 20 --expect-vlan 100 --hold-s 300 --refresh-s 60\n"
    "  voiceedge-phonesim -i eth0 --first-mac 00:1e:7a:00:00:02 --hold-s 60      (answers calls)\n"
    "  voiceedge-phonesim -i eth0 --first-mac 00:1e:7a:00:00:01 --call 1002 --call-seconds 5";

}  // namespace

int main(int argc, char** argv) {
  ve::phonesim::Options o;
  CLI::App app{kDescription, "voiceedge-phonesim"};
  app.footer(kFooter);
  app.get_formatter()->column_width(34);
  std::string first_mac;
  std::string transport = "auto";
  int timeout_s = static_cast<int>(o.timeout.count());
  int cdp_timeout_s = static_cast<int>(o.cdp_timeout.count());
  int dhcp_timeout_s = static_cast<int>(o.dhcp_timeout.count());
  int fetch_timeout_s = static_cast<int>(o.fetch_timeout.count());
  int sip_timeout_s = static_cast<int>(o.sip_timeout.count());
  int hold_s = 0;
  int refresh_s = 0;
  int expect_vlan = 0;
  int call_after_s = 1;
  int call_seconds = static_cast<int>(o.call_seconds.count());
  int answer_after_ms = static_cast<int>(o.answer_after.count());

  app.add_option("-i,--interface", o.interface, "interface the phones are plugged into (required)")->required();
  app.add_option("-n,--phones", o.phones, "number of phones (default 1)")->check(CLI::Range(1, 100000));
  app.add_option("--first-mac", first_mac,
                 "MAC of the first phone; the others count up from it (default 00:1e:7a:00:00:01)");
  app.add_option("--model", o.model, "phone model, e.g. CP-7841, CP-8851 (default CP-7841)");
  app.add_option("--load", o.load,
                 "the load the phones run now; a config naming another load makes them fetch it "
                 "(default: whatever their config names, i.e. no upgrade)");
  app.add_option("--inactive-load", o.inactive_load, "reported as InactiveLoad in the REGISTER");
  app.add_option("--expect-vlan", expect_vlan, "fail step 3 unless CDP offers this voice VLAN")
      ->check(CLI::Range(1, 4094));
  app.add_flag("--tag-voice-vlan", o.tag_voice_vlan,
               "once CDP names a voice VLAN, send DHCP and everything after it tagged, over <interface>.<vlan> "
               "(see VLANS)");
  app.add_option("-c,--concurrency", o.concurrency, "boots in flight at once (default 100)")
      ->check(CLI::Range(1, 100000));
  app.add_option("--timeout-s", timeout_s, "give up on a phone whose boot takes longer (default 120)")
      ->check(CLI::Range(1, 86400));
  app.add_option("--cdp-timeout-s", cdp_timeout_s, "wait this long for the switch's CDP (default 15)")
      ->check(CLI::Range(1, 3600));
  app.add_option("--dhcp-timeout-s", dhcp_timeout_s, "wait this long for an address (default 60)")
      ->check(CLI::Range(1, 3600));
  app.add_option("--fetch-timeout-s", fetch_timeout_s, "per file and server (default 10)")->check(CLI::Range(1, 3600));
  app.add_option("--sip-timeout-s", sip_timeout_s,
                 "per TCP connect and per SIP request: REGISTER, BYE, an INVITE until its first response "
                 "(default 10)")
      ->check(CLI::Range(1, 3600));
  app.add_option("--transport", transport, "downloads: auto (HTTP 6970, then TFTP), http or tftp (default auto)")
      ->check(CLI::IsMember({"auto", "http", "tftp"}));
  app.add_option("--tftp-windowsize", o.tftp_windowsize,
                 "TFTP downloads ask for this RFC 7440 windowsize (default 1: lockstep, option not sent)")
      ->check(CLI::Range(1, 64));
  app.add_option("--power-mw", o.power_request_mw, "power the phones ask for over CDP (default 6300)")
      ->check(CLI::Range(1000, 90000));
  app.add_option("--hold-s", hold_s,
                 "after the last boot, keep the registrations refreshed this long, then report "
                 "(default 0: exit at once)")
      ->check(CLI::Range(0, 86400 * 7));
  app.add_option("--refresh-s", refresh_s, "re-REGISTER interval while holding (default: half the granted expiry)")
      ->check(CLI::Range(0, 86400));
  app.add_option("--call", o.call,
                 "once registered, call this extension (sip:EXT@<call manager>) over the phone's TCP "
                 "connection, talk, hang up (see CALLS)")
      ->check(CLI::Validator(
          [](std::string& ext) {
            const bool ok =
                !ext.empty() && ext.size() <= 64 &&
                ext.find_first_not_of("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ*#+._-") ==
                    std::string::npos;
            return ok ? std::string() : "not an extension (digits, letters, * # + . _ - only): " + ext;
          },
          "EXT"));
  app.add_option("--call-after-s", call_after_s, "with --call: seconds after the registration (default 1)")
      ->check(CLI::Range(0, 86400));
  app.add_option("--call-seconds", call_seconds, "with --call: talk time before the BYE (default 2)")
      ->check(CLI::Range(0, 86400));
  app.add_option("--answer-after-ms", answer_after_ms, "incoming calls ring this long before the 200 OK (default 300)")
      ->check(CLI::Range(0, 600000));
  app.add_flag("--busy", o.busy, "answer incoming calls with 486 Busy Here instead");
  app.add_flag("--ignore-notify", o.ignore_notify,
               "leave the call manager's service-control NOTIFY (restart, reset) unanswered, as a hung phone does");
  app.add_flag("--keep-addresses", o.keep_addresses, "leave the leased addresses on the interface at exit");
  app.add_flag("--json", o.json, "one JSON object per line (see OUTPUT)");
  app.add_flag("-v,--verbose", o.verbose, "text output lists every step of every phone");
  app.set_version_flag("-V,--version", std::string("voiceedge-phonesim ") + VE_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (!first_mac.empty()) {
    auto mac = ve::MacAddress::parse(first_mac);
    if (!mac) {
      std::cerr << "voiceedge-phonesim: --first-mac: not a MAC address: " << first_mac << "\n";
      return 2;
    }
    o.first_mac = *mac;
  }
  if (expect_vlan > 0) o.expect_vlan = expect_vlan;
  o.transport = transport == "http"   ? ve::phonesim::FetchTransport::Http
                : transport == "tftp" ? ve::phonesim::FetchTransport::Tftp
                                      : ve::phonesim::FetchTransport::Auto;
  o.timeout = std::chrono::seconds(timeout_s);
  o.cdp_timeout = std::chrono::seconds(cdp_timeout_s);
  o.dhcp_timeout = std::chrono::seconds(dhcp_timeout_s);
  o.fetch_timeout = std::chrono::seconds(fetch_timeout_s);
  o.sip_timeout = std::chrono::seconds(sip_timeout_s);
  o.hold = std::chrono::seconds(hold_s);
  o.refresh = std::chrono::seconds(refresh_s);
  o.call_after = std::chrono::seconds(call_after_s);
  o.call_seconds = std::chrono::seconds(call_seconds);
  o.answer_after = std::chrono::milliseconds(answer_after_ms);
  spdlog::set_level(spdlog::level::warn);
  return ve::phonesim::run(o, std::cout, std::cerr);
}
