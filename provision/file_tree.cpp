// The virtual tree: configs rendered on request, static files from provisioning.root (read once,
// shared), CTL/ITL answered "not found" on non-secure sites, nothing outside the root ever served.
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>

#include "provision/provision.hpp"

namespace ve::provision {

namespace fs = std::filesystem;

namespace {

char upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c; }

std::string to_upper(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), upper);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char l, char r) { return upper(l) == upper(r); });
}

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

bool iends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && iequals(s.substr(s.size() - suffix.size()), suffix);
}

bool icontains(std::string_view s, std::string_view needle) {
  if (needle.size() > s.size()) return false;
  for (std::size_t i = 0; i + needle.size() <= s.size(); ++i) {
    if (iequals(s.substr(i, needle.size()), needle)) return true;
  }
  return false;
}

std::string_view basename_of(std::string_view name) {
  const auto slash = name.find_last_of('/');
  return slash == std::string_view::npos ? name : name.substr(slash + 1);
}

Bytes make_bytes(const std::string& text) {
  auto v = std::make_shared<std::vector<std::byte>>(text.size());
  std::memcpy(v->data(), text.data(), text.size());
  return v;
}

bool is_ctl_or_itl(std::string_view base) {
  return iends_with(base, ".tlv") && (istarts_with(base, "CTL") || istarts_with(base, "ITL"));
}

}  // namespace

std::string_view to_string(Protocol p) {
  switch (p) {
    case Protocol::Tftp: return "tftp";
    case Protocol::Http: return "http";
  }
  return "?";
}

std::optional<MacAddress> mac_in_name(std::string_view filename) {
  const auto base = basename_of(filename);
  for (std::size_t i = 0; i + 15 <= base.size(); ++i) {
    if (!istarts_with(base.substr(i), "SEP")) continue;
    const auto hex = base.substr(i + 3, 12);
    if (!std::all_of(hex.begin(), hex.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }))
      continue;
    if (auto mac = MacAddress::parse(hex)) return mac;
  }
  return std::nullopt;
}

std::optional<MacAddress> config_owner(std::string_view filename) {
  if (classify(filename) != Step::ConfigFile) return std::nullopt;
  return mac_in_name(filename);
}

std::optional<Step> classify(std::string_view filename) {
  while (!filename.empty() && filename.front() == '/') filename.remove_prefix(1);
  const auto base = basename_of(filename);
  if (iends_with(base, ".tlv")) {
    if (istarts_with(base, "CTL")) return Step::CtlFile;
    if (istarts_with(base, "ITL")) return Step::ItlFile;
  }
  if (iends_with(base, ".cnf.xml") || iends_with(base, ".cnf.xml.sgn")) return Step::ConfigFile;
  if (iends_with(base, ".loads") || iends_with(base, ".sbn") || iends_with(base, ".sb2") || iends_with(base, ".zz") ||
      iends_with(base, ".img") || iends_with(base, ".pkg") || iends_with(base, ".bin")) {
    return Step::FirmwareLoad;
  }
  if (icontains(base, "dialplan") || icontains(base, "dialrule") || icontains(base, "dialtemplate"))
    return Step::DialRules;
  if (icontains(base, "softkey")) return Step::Softkeys;
  if (icontains(base, "ringlist") || iends_with(base, ".raw") || iends_with(base, ".rwb")) return Step::Ringtones;
  // Locales live in <locale>/… directories, or are jars / tone and dictionary files.
  if (filename.find('/') != std::string_view::npos || iends_with(base, ".jar") || icontains(base, "-tones") ||
      icontains(base, "dictionary") || icontains(base, "_locale")) {
    return Step::Locale;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------- StaticFileCache

Result<Bytes, std::string> StaticFileCache::get(const fs::path& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) return unexpected(ec.message());
  const auto mtime = fs::last_write_time(path, ec);
  if (ec) return unexpected(ec.message());
  std::lock_guard lock(mutex_);
  const std::string key = path.string();
  if (auto it = entries_.find(key); it != entries_.end()) {
    if (it->second.mtime == mtime && it->second.size == size) {
      it->second.last_use = ++clock_;
      return it->second.bytes;
    }
    total_ -= it->second.size;
    entries_.erase(it);
  }
  // Read once; every transfer of this file version shares the buffer.
  std::ifstream in(path, std::ios::binary);
  if (!in) return unexpected(std::string("cannot open"));
  auto data = std::make_shared<std::vector<std::byte>>(static_cast<std::size_t>(size));
  in.read(reinterpret_cast<char*>(data->data()), static_cast<std::streamsize>(size));
  if (static_cast<std::uintmax_t>(in.gcount()) != size) return unexpected(std::string("short read"));
  ++reads_;
  total_ += size;
  evict_locked();  // before inserting, so the new entry (held by the caller) is not counted as in use
  Bytes bytes = std::move(data);
  entries_[key] = Entry{mtime, size, bytes, ++clock_};
  return bytes;
}

void StaticFileCache::evict_locked() {
  while (total_ > max_bytes_) {
    // Least recently used entry that no transfer holds any more.
    auto victim = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->second.bytes.use_count() > 1) continue;
      if (victim == entries_.end() || it->second.last_use < victim->second.last_use) victim = it;
    }
    if (victim == entries_.end()) return;
    total_ -= victim->second.size;
    entries_.erase(victim);
  }
}

std::size_t StaticFileCache::cached_bytes() const {
  std::lock_guard lock(mutex_);
  return total_;
}

std::size_t StaticFileCache::reads() const {
  std::lock_guard lock(mutex_);
  return reads_;
}

// ---------------------------------------------------------------- FileTree

FileTree::FileTree(config::SiteConfigPtr site, std::shared_ptr<StaticFileCache> cache)
    : site_(std::move(site)), cache_(std::move(cache)) {
  std::error_code ec;
  root_ = fs::canonical(site_->provisioning.root, ec);
  if (ec) root_.clear();
  for (std::size_t i = 0; i < site_->phones.size(); ++i) {
    phone_index_[to_upper(site_->phones[i].mac.sep_name() + ".cnf.xml")] = i;
  }
  rendered_.resize(site_->phones.size());
  default_config_ = make_bytes(render_default_config(*site_));
}

std::vector<std::string> FileTree::generated_names() const {
  std::vector<std::string> names;
  names.reserve(phone_index_.size() + 1);
  for (const auto& [name, index] : phone_index_) names.push_back(name);
  names.push_back(to_upper("XMLDefault.cnf.xml"));
  std::sort(names.begin(), names.end());
  return names;
}

std::size_t FileTree::renders() const {
  std::lock_guard lock(rendered_mutex_);
  return renders_;
}

std::size_t FileTree::live_renderings() const {
  std::lock_guard lock(rendered_mutex_);
  return static_cast<std::size_t>(
      std::count_if(rendered_.begin(), rendered_.end(), [](const auto& w) { return !w.expired(); }));
}

Bytes FileTree::phone_config(std::size_t index) const {
  std::lock_guard lock(rendered_mutex_);
  if (auto live = rendered_[index].lock()) return live;
  // Rendered under the lock: two requests at once still make one copy.
  Bytes bytes = make_bytes(render_phone_config(*site_, site_->phones[index]));
  rendered_[index] = bytes;
  ++renders_;
  return bytes;
}

Result<File, LookupError> FileTree::open(std::string_view requested) const {
  using Kind = LookupError::Kind;
  if (requested.empty()) return unexpected(LookupError{Kind::NotFound, false, "empty name"});
  if (requested.size() > kMaxRequestName) return unexpected(LookupError{Kind::Refused, false, "name too long"});
  if (requested.find('\0') != std::string_view::npos)
    return unexpected(LookupError{Kind::Refused, false, "NUL in name"});
  for (char c : requested) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      return unexpected(LookupError{Kind::Refused, false, "control character in name"});
  }
  std::string_view name = requested;
  while (!name.empty() && name.front() == '/') name.remove_prefix(1);
  if (name.empty()) return unexpected(LookupError{Kind::NotFound, false, "empty name"});

  // Reject ".." anywhere as a path component before touching the disk.
  std::size_t start = 0;
  while (start <= name.size()) {
    const auto end = std::min(name.find('/', start), name.size());
    if (name.substr(start, end - start) == "..") return unexpected(LookupError{Kind::Refused, false, "path has .."});
    start = end + 1;
  }

  const std::string key = to_upper(name);
  if (auto it = phone_index_.find(key); it != phone_index_.end()) {
    return File{std::string(name), phone_config(it->second), true};
  }
  if (key == "XMLDEFAULT.CNF.XML") return File{std::string(name), default_config_, true};
  const auto base = basename_of(name);
  if (!site_->provisioning.secure && (is_ctl_or_itl(base) || iends_with(base, ".cnf.xml.sgn"))) {
    return unexpected(LookupError{Kind::NotFound, true, "non-secure site"});
  }
  return open_static(name);
}

Result<File, LookupError> FileTree::open_static(std::string_view relative) const {
  using Kind = LookupError::Kind;
  if (root_.empty()) return unexpected(LookupError{Kind::NotFound, false, "no provisioning root"});
  // Walk component by component: exact name first, then a case-insensitive match.
  fs::path path = root_;
  std::size_t start = 0;
  while (start < relative.size()) {
    const auto end = std::min(relative.find('/', start), relative.size());
    const std::string part(relative.substr(start, end - start));
    start = end + 1;
    if (part.empty() || part == ".") continue;
    std::error_code ec;
    fs::path candidate = path / part;
    if (!fs::exists(fs::symlink_status(candidate, ec))) {
      bool found = false;
      std::size_t scanned = 0;
      for (fs::directory_iterator it(path, ec), stop; !ec && it != stop && scanned < 100000;
           it.increment(ec), ++scanned) {
        if (iequals(it->path().filename().string(), part)) {
          candidate = it->path();
          found = true;
          break;
        }
      }
      if (!found) return unexpected(LookupError{Kind::NotFound, false, "no such file"});
    }
    path = std::move(candidate);
  }
  std::error_code ec;
  const fs::path real = fs::canonical(path, ec);
  if (ec) return unexpected(LookupError{Kind::NotFound, false, "no such file"});
  // Symlinks may point anywhere inside the root, never outside.
  const auto root_text = root_.string();
  const auto real_text = real.string();
  if (real_text.size() <= root_text.size() || real_text.compare(0, root_text.size(), root_text) != 0 ||
      (root_text != "/" && real_text[root_text.size()] != '/')) {
    return unexpected(LookupError{Kind::Refused, false, "escapes root"});
  }
  if (!fs::is_regular_file(real, ec)) return unexpected(LookupError{Kind::NotFound, false, "not a regular file"});
  auto bytes = cache_->get(real);
  if (!bytes) return unexpected(LookupError{Kind::NotFound, false, "unreadable: " + bytes.error()});
  return File{fs::relative(path, root_, ec).string(), std::move(bytes.value()), false};
}

}  // namespace ve::provision
