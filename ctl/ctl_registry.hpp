#pragma once
// voiceedgectl's command table. Each part brings ctl/<name>_render.cpp defining
// `void add_<name>_commands(CommandTable&)`; ctl/CMakeLists.txt generates the list.
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ve::ctl {

struct Command {
  std::vector<std::string> words;      // {"show", "cdp", "neighbors"} -> request "show.cdp.neighbors"
  std::vector<std::string> arg_names;  // positional words after the command, e.g. {"phone"}
  std::string help;                    // one line for --help
  // Turns the daemon's JSON `data` into the human table. `args` holds positional args and flags.
  std::function<std::string(const nlohmann::json& data, const nlohmann::json& args)> render;
  std::vector<std::string> flags = {};  // boolean flags it accepts, e.g. {"detail"} for --detail
  // Options that take a value (--seconds 10, --write FILE): in `args` as strings, or numbers
  // when the value is all digits.
  std::vector<std::string> options = {};
  // Commands that do more than one request/answer (streams, files) run themselves: `run` gets
  // the socket path, the arguments, --timeout and --json, and returns the exit status.
  std::function<int(const std::string& socket, const nlohmann::json& args, int timeout_s, bool as_json)> run = {};
  // What --help shows for each option's value ("N", "FILE|-"; "X" when absent), and which
  // options --help shows without brackets because the command needs them (its `run` checks).
  std::map<std::string, std::string> option_values = {};
  std::set<std::string> required_options = {};
  // Commands that wait for a phone (phone restart) answer late: --timeout is at least this.
  int min_timeout_s = 0;
};

class CommandTable {
 public:
  void add(Command c) { commands_.push_back(std::move(c)); }
  const std::vector<Command>& commands() const { return commands_; }

 private:
  std::vector<Command> commands_;
};

void add_all_commands(CommandTable& arg);

// Helpers for renderers: a left-aligned text table with a header row.
std::string render_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);

}  // namespace ve::ctl
