#include "tests/support/daemon.hpp"

#include <signal.h>

namespace ve::test {

std::filesystem::path voiceedged_path() { return VE_VOICEEDGED; }
std::filesystem::path voiceedgectl_path() { return VE_VOICEEDGECTL; }
std::filesystem::path source_dir() { return VE_SOURCE_DIR; }

namespace {
std::string substitute(std::string s, const std::string& from, const std::string& to) {
  for (auto pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
  return s;
}
}  // namespace

Daemon::Daemon(const std::string& site_yaml, std::vector<std::string> wrapper)
    : dir_("ve-daemon"), wrapper_(std::move(wrapper)) {
  write_site(site_yaml);
}

Daemon::~Daemon() {
  if (child_.pid() > 0 && child_.running()) {
    child_.stop(SIGTERM);
  }
}

void Daemon::write_site(const std::string& site_yaml) const {
  auto text = substitute(site_yaml, "@STATE@", (dir_ / "state").string());
  text = substitute(text, "@SOCKET@", socket().string());
  dir_.write("site.yaml", text);
}

bool Daemon::start(std::chrono::seconds timeout) {
  std::vector<std::string> argv = wrapper_;
  argv.push_back(voiceedged_path().string());
  argv.push_back("--config");
  argv.push_back(site_file().string());
  argv.push_back("--log-level");
  argv.push_back("debug");
  child_ = Child(argv, dir_ / "voiceedged.log");
  return eventually(
             [&] {
               if (!child_.running()) return true;  // died: report below
               return ctl({"version"}).exit_code == 0;
             },
             timeout) &&
         child_.running();
}

RunResult Daemon::ctl(const std::vector<std::string>& words) const {
  std::vector<std::string> argv = {voiceedgectl_path().string(), "--socket", socket().string()};
  argv.insert(argv.end(), words.begin(), words.end());
  return run(argv, std::chrono::seconds(30));
}

nlohmann::json Daemon::ctl_json(const std::vector<std::string>& words) const {
  std::vector<std::string> w = {"--json"};
  w.insert(w.end(), words.begin(), words.end());
  auto r = ctl(w);
  return nlohmann::json::parse(r.out, nullptr, false);
}

}  // namespace ve::test
