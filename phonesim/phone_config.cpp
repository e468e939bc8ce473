// Reads what a phone needs from SEP<MAC>.cnf.xml / XMLDefault.cnf.xml (libxml2, no network,
// no entity expansion), and the file list of a .loads file. Pure.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <memory>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "phonesim/phonesim.hpp"

namespace ve::phonesim {

namespace {

struct DocFree {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};

bool named(const xmlNode* n, std::string_view name) {
  return n != nullptr && n->type == XML_ELEMENT_NODE &&
         std::string_view(reinterpret_cast<const char*>(n->name)) == name;
}

const xmlNode* child(const xmlNode* parent, std::string_view name) {
  if (parent == nullptr) return nullptr;
  for (const xmlNode* c = parent->children; c != nullptr; c = c->next) {
    if (named(c, name)) return c;
  }
  return nullptr;
}

// First element called `name` anywhere below `parent` (depth first).
const xmlNode* descendant(const xmlNode* parent, std::string_view name) {
  if (parent == nullptr) return nullptr;
  for (const xmlNode* c = parent->children; c != nullptr; c = c->next) {
    if (c->type != XML_ELEMENT_NODE) continue;
    if (named(c, name)) return c;
    if (const xmlNode* d = descendant(c, name)) return d;
  }
  return nullptr;
}

std::string trimmed(std::string s) {
  auto ws = [](unsigned char c) { return std::isspace(c) != 0; };
  while (!s.empty() && ws(static_cast<unsigned char>(s.back()))) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && ws(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

std::string text(const xmlNode* n) {
  if (n == nullptr) return {};
  xmlChar* content = xmlNodeGetContent(n);
  if (content == nullptr) return {};
  std::string out(reinterpret_cast<const char*>(content));
  xmlFree(content);
  return trimmed(std::move(out));
}

std::string child_text(const xmlNode* parent, std::string_view name) { return text(child(parent, name)); }

std::string attribute(const xmlNode* n, const char* name) {
  if (n == nullptr) return {};
  xmlChar* v = xmlGetProp(n, reinterpret_cast<const xmlChar*>(name));
  if (v == nullptr) return {};
  std::string out(reinterpret_cast<const char*>(v));
  xmlFree(v);
  return trimmed(std::move(out));
}

std::optional<int> number(const std::string& s) {
  int v = 0;
  const auto* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  if (ec != std::errc() || p != end) return std::nullopt;
  return v;
}

}  // namespace

Result<PhoneConfig, std::string> parse_phone_config(std::string_view xml) {
  if (xml.size() > (std::size_t{16} << 20)) return unexpected(std::string("config file larger than 16 MiB"));
  std::unique_ptr<xmlDoc, DocFree> doc(xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "config.xml", nullptr,
                                                     XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
  if (!doc) return unexpected(std::string("not well-formed XML"));
  const xmlNode* root = xmlDocGetRootElement(doc.get());
  if (root == nullptr) return unexpected(std::string("empty XML document"));

  PhoneConfig c;
  c.root = reinterpret_cast<const char*>(root->name);
  if (const xmlNode* members = child(descendant(root, "callManagerGroup"), "members")) {
    for (const xmlNode* m = members->children; m != nullptr; m = m->next) {
      if (!named(m, "member")) continue;
      const xmlNode* cm = child(m, "callManager");
      CallManagerEntry e;
      e.priority = number(attribute(m, "priority")).value_or(0);
      e.name = child_text(cm, "name");
      e.host = child_text(cm, "processNodeName");
      const auto port = number(child_text(child(cm, "ports"), "sipPort"));
      if (port && *port > 0 && *port <= 65535) e.sip_port = static_cast<std::uint16_t>(*port);
      if (!e.host.empty()) c.call_managers.push_back(std::move(e));
    }
    std::stable_sort(c.call_managers.begin(), c.call_managers.end(),
                     [](const CallManagerEntry& a, const CallManagerEntry& b) { return a.priority < b.priority; });
  }
  c.load_information = child_text(root, "loadInformation");
  c.version_stamp = child_text(root, "versionStamp");
  c.user_locale = child_text(child(root, "userLocale"), "name");
  c.network_locale = child_text(root, "networkLocale");
  c.transport = number(child_text(root, "transportLayerProtocol"));
  if (const xmlNode* profile = child(root, "sipProfile")) {
    c.dial_template = child_text(profile, "dialTemplate");
    c.softkey_file = child_text(profile, "softKeyFile");
    c.register_expires_s = number(child_text(child(profile, "sipStack"), "timerRegisterExpires"));
    if (const xmlNode* lines = child(profile, "sipLines")) {
      for (const xmlNode* l = lines->children; l != nullptr; l = l->next) {
        if (!named(l, "line")) continue;
        LineConfig line;
        line.button = number(attribute(l, "button")).value_or(static_cast<int>(c.lines.size()) + 1);
        line.name = child_text(l, "name");
        line.display_name = child_text(l, "displayName");
        line.auth_name = child_text(l, "authName");
        line.auth_password = child_text(l, "authPassword");
        // A line without a name is a feature button (speed dial, BLF): nothing to register.
        if (!line.name.empty()) c.lines.push_back(std::move(line));
      }
    }
  }
  return c;
}

std::vector<std::string> parse_loads_file(std::string_view text) {
  std::vector<std::string> names;
  auto push = [&](std::string name) {
    name = trimmed(std::move(name));
    if (!name.empty() && std::find(names.begin(), names.end(), name) == names.end()) names.push_back(std::move(name));
  };
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && text[first] == '<') {
    std::unique_ptr<xmlDoc, DocFree> doc(xmlReadMemory(text.data(), static_cast<int>(text.size()), "loads.xml", nullptr,
                                                       XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
    if (!doc) return names;
    // Every element carrying a name/file attribute names one file, in document order.
    std::vector<const xmlNode*> stack{xmlDocGetRootElement(doc.get())};
    while (!stack.empty()) {
      const xmlNode* n = stack.back();
      stack.pop_back();
      if (n == nullptr) continue;
      for (const char* key : {"name", "file"}) {
        if (auto v = attribute(n, key); !v.empty()) {
          push(v);
          break;
        }
      }
      std::vector<const xmlNode*> kids;
      for (const xmlNode* c = n->children; c != nullptr; c = c->next) {
        if (c->type == XML_ELEMENT_NODE) kids.push_back(c);
      }
      stack.insert(stack.end(), kids.rbegin(), kids.rend());
    }
    return names;
  }
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    auto line = text.substr(start, end - start);
    if (auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    push(std::string(line));
    start = end + 1;
  }
  return names;
}

std::string locale_jar_for(std::string_view model) {
  if (model.find("88") != std::string_view::npos) return "sl-be-sip.jar";
  return "sp-sip.jar";
}

std::string ring_list_for(std::string_view model) {
  // 7800 and 8800 phones play wideband tones.
  if (model.find("78") != std::string_view::npos || model.find("88") != std::string_view::npos)
    return "Ringlist-wb.xml";
  return "Ringlist.xml";
}

}  // namespace ve::phonesim
