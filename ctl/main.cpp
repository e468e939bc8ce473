// voiceedgectl: the command line for voiceedged. A thin front end: words become one JSON request
// on the control socket; the answer is printed as a table, or as JSON with --json.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <set>

#include <CLI/CLI.hpp>

#include "ctl/ctl_registry.hpp"
#include "ctl/ctl_util.hpp"

namespace {

using nlohmann::json;

constexpr int kExitOk = 0;
constexpr int kExitCommandError = 1;
constexpr int kExitUnreachable = 2;

struct Reply {
  bool reached = false;
  std::string error;  // why the daemon could not be reached
  json body;
};

Reply call_daemon(const std::string& socket_path, const json& request, int timeout_s) {
  Reply r;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    r.error = std::strerror(errno);
    return r;
  }
  timeval tv{timeout_s, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) {
    ::close(fd);
    r.error = "socket path too long";
    return r;
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    r.error = std::strerror(errno);
    ::close(fd);
    return r;
  }
  const std::string line = request.dump() + "\n";
  std::size_t sent = 0;
  while (sent < line.size()) {
    auto n = ::send(fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      r.error = std::string("send: ") + std::strerror(errno);
      ::close(fd);
      return r;
    }
    sent += static_cast<std::size_t>(n);
  }
  std::string in;
  char buf[65536];
  while (in.find('\n') == std::string::npos) {
    auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      r.error = n == 0 ? "the daemon closed the connection" : std::string("recv: ") + std::strerror(errno);
      ::close(fd);
      return r;
    }
    in.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  r.body = json::parse(in.substr(0, in.find('\n')), nullptr, false);
  if (r.body.is_discarded()) {
    r.error = "the daemon's answer is not JSON";
    return r;
  }
  r.reached = true;
  return r;
}

std::string default_socket() {
  if (const char* env = std::getenv("VOICEEDGE_SOCKET")) return env;
  return "/run/voiceedge/control.sock";
}

}  // namespace

int main(int argc, char** argv) {
  ve::ctl::CommandTable table;
  ve::ctl::add_core_commands(table);
  ve::ctl::add_all_commands(table);

  // Options with a value (--seconds 10) are taken out before CLI11 sees the command words, so
  // that the value cannot be mistaken for a word.
  std::set<std::string> value_options;
  for (const auto& c : table.commands()) value_options.insert(c.options.begin(), c.options.end());
  std::map<std::string, std::string> option_values;
  std::vector<char*> kept_argv;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (i > 0 && a.rfind("--", 0) == 0) {
      const auto eq = a.find('=');
      const std::string name = a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
      if (value_options.count(name) != 0) {
        if (eq != std::string::npos) {
          option_values[name] = a.substr(eq + 1);
          continue;
        }
        if (i + 1 < argc) {
          option_values[name] = argv[++i];
          continue;
        }
        std::cerr << "voiceedgectl: --" << name << " needs a value\n";
        return kExitCommandError;
      }
    }
    kept_argv.push_back(argv[i]);
  }
  argc = static_cast<int>(kept_argv.size());
  argv = kept_argv.data();

  std::string commands_help;
  for (const auto& c : table.commands()) {
    std::string usage;
    for (const auto& w : c.words) usage += w + " ";
    for (const auto& a : c.arg_names) usage += a == "phone" ? "MAC " : "<" + a + "> ";
    for (const auto& f : c.flags) usage += "[--" + f + "] ";
    for (const auto& o : c.options) {
      const auto value = c.option_values.contains(o) ? c.option_values.at(o) : std::string("X");
      usage += c.required_options.contains(o) ? "--" + o + " " + value + " " : "[--" + o + " " + value + "] ";
    }
    commands_help += "  " + usage;
    commands_help += std::string(usage.size() < 36 ? 36 - usage.size() : 1, ' ') + c.help + "\n";
  }

  CLI::App app("voiceedgectl - control and inspect a running voiceedged", "voiceedgectl");
  app.footer(
      "COMMANDS\n" + commands_help +
      "\nMACs are accepted as 00:11:22:33:44:55, 0011.2233.4455, 001122334455 or SEP001122334455.\n"
      "\nPERMISSIONS\n  show commands and version need root or a member of control.read_group (default voiceedge);\n"
      "  everything that changes the daemon (power inline, reload, ...) needs root or a member of\n"
      "  control.admin_group (default voiceedge-admin). The daemon checks the caller's uid and groups.\n"
      "\nEXIT STATUS\n  0  ok\n  1  the daemon answered with an error (bad command, not found, reload rejected,\n"
      "     permission-denied)\n"
      "  2  the daemon cannot be reached (not running, wrong --socket, no permission)\n"
      "\nENVIRONMENT\n  VOICEEDGE_SOCKET  default for --socket\n"
      "\nEXAMPLES\n  voiceedgectl show phones\n  voiceedgectl show journey SEP001122334455\n"
      "  voiceedgectl --json show cdp neighbors\n  voiceedgectl reload\n"
      "  voiceedgectl capture SEP001122334455 --seconds 60 --write phone.pcapng\n"
      "  voiceedgectl capture SEP001122334455 --write - | wireshark -k -i -\n"
      "  voiceedgectl report SEP001122334455 --output phone.tar.gz\n"
      "  voiceedgectl phone restart SEP001122334455\n"
      "  voiceedgectl phone power-cycle SEP001122334455 --seconds 10");
  std::string socket_path = default_socket();
  bool as_json = false;
  int timeout_s = 10;
  std::vector<std::string> words;
  app.add_option("-s,--socket", socket_path, "Control socket of voiceedged")->capture_default_str();
  app.add_flag("-j,--json", as_json, "Print the daemon's JSON answer as it is");
  app.add_option("-t,--timeout", timeout_s, "Seconds to wait for the daemon")
      ->capture_default_str()
      ->check(CLI::Range(1, 600));
  app.set_version_flag("-V,--version", std::string("voiceedgectl ") + VE_VERSION);
  app.add_option("command", words, "Command words and arguments (see COMMANDS)")->required();
  app.allow_extras();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kExitCommandError;
  }
  // Flags after the command words (e.g. --detail) arrive as extras.
  std::vector<std::string> flags;
  for (const auto& x : app.remaining()) {
    if (x.rfind("--", 0) == 0)
      flags.push_back(x.substr(2));
    else
      words.push_back(x);
  }
  for (auto it = words.begin(); it != words.end();) {
    if (it->rfind("--", 0) == 0) {
      if (*it == "--json")
        as_json = true;
      else
        flags.push_back(it->substr(2));
      it = words.erase(it);
    } else {
      ++it;
    }
  }

  // The longest command whose words prefix what was typed.
  const ve::ctl::Command* match = nullptr;
  for (const auto& c : table.commands()) {
    if (c.words.size() > words.size()) continue;
    if (!std::equal(c.words.begin(), c.words.end(), words.begin())) continue;
    if (!match || c.words.size() > match->words.size()) match = &c;
  }
  if (!match) {
    std::string typed;
    for (const auto& w : words) typed += (typed.empty() ? "" : " ") + w;
    std::cerr << "voiceedgectl: unknown command '" << typed << "' (see voiceedgectl --help)\n";
    return kExitCommandError;
  }
  std::vector<std::string> rest(words.begin() + static_cast<long>(match->words.size()), words.end());
  if (rest.size() != match->arg_names.size()) {
    std::string usage;
    for (const auto& w : match->words) usage += w + " ";
    for (const auto& a : match->arg_names) usage += "<" + a + "> ";
    std::cerr << "voiceedgectl: usage: voiceedgectl " << usage << "\n";
    return kExitCommandError;
  }
  json args = json::object();
  for (std::size_t i = 0; i < rest.size(); ++i) args[match->arg_names[i]] = rest[i];
  for (const auto& f : flags) {
    if (std::find(match->flags.begin(), match->flags.end(), f) == match->flags.end()) {
      std::cerr << "voiceedgectl: unknown option --" << f << " for this command\n";
      return kExitCommandError;
    }
    args[f] = true;
  }
  for (const auto& [name, value] : option_values) {
    if (std::find(match->options.begin(), match->options.end(), name) == match->options.end()) {
      std::cerr << "voiceedgectl: unknown option --" << name << " for this command\n";
      return kExitCommandError;
    }
    const bool digits =
        !value.empty() && std::all_of(value.begin(), value.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
    if (digits && value.size() < 19)
      args[name] = std::stoull(value);
    else
      args[name] = value;
  }
  timeout_s = std::max(timeout_s, match->min_timeout_s);
  if (match->run) return match->run(socket_path, args, timeout_s, as_json);
  std::string cmd;
  for (const auto& w : match->words) cmd += (cmd.empty() ? "" : ".") + w;

  auto reply = call_daemon(socket_path, json{{"cmd", cmd}, {"args", args}}, timeout_s);
  if (!reply.reached) {
    std::cerr << "voiceedgectl: cannot reach voiceedged at " << socket_path << ": " << reply.error
              << "\n  (is it running? use --socket PATH or VOICEEDGE_SOCKET for another socket)\n";
    return kExitUnreachable;
  }
  if (!reply.body.value("ok", false)) {
    const auto& err = reply.body.contains("error") ? reply.body["error"] : json::object();
    if (as_json) {
      std::cout << reply.body.dump(2) << "\n";
    } else {
      std::cerr << "voiceedgectl: " << err.value("code", "error") << ": " << err.value("message", "") << "\n";
      if (err.value("code", "") == "permission-denied")
        std::cerr << "  (roles come from control.read_group and control.admin_group in the site file; "
                     "`id` shows your groups, which count from your next login)\n";
    }
    return kExitCommandError;
  }
  const auto& data = reply.body.contains("data") ? reply.body["data"] : json();
  if (as_json) {
    std::cout << data.dump(2) << "\n";
  } else {
    std::cout << match->render(data, args);
  }
  return kExitOk;
}
