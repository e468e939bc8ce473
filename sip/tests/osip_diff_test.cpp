// Differential test: our parser and libosip2 must agree on every message of the corpus
// (method/status, Request-URI, Vias and top branch, From/To tags, Call-ID, CSeq, Contacts with
// their expires and +sip.instance, Expires).
#include <gtest/gtest.h>

#include <osipparser2/osip_parser.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "sip/sip.hpp"

namespace ve::sip {
namespace {

std::string s(const char* p) { return p ? std::string(p) : std::string(); }

std::string unquote(std::string v) {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  return v;
}

std::string lower(std::string v) {
  std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return v;
}

// What both parsers are asked for, in one comparable shape.
struct Facts {
  bool is_request = false;
  int status = 0;
  std::string method;
  std::string ruri_scheme, ruri_user, ruri_host, ruri_port;
  std::size_t via_count = 0;
  std::string top_branch;
  std::string top_via_host, top_via_transport;
  std::string from_tag, to_tag;
  std::string call_id;
  std::string cseq_number, cseq_method;
  struct ContactFacts {
    bool star = false;
    std::string user, host, port, expires, instance;
    bool operator==(const ContactFacts&) const = default;
  };
  std::vector<ContactFacts> contacts;
  std::string expires;
  bool operator==(const Facts&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Facts& f) {
  os << (f.is_request ? f.method : std::to_string(f.status)) << " ruri=" << f.ruri_scheme << ":" << f.ruri_user << "@"
     << f.ruri_host << ":" << f.ruri_port << " vias=" << f.via_count << " branch=" << f.top_branch
     << " via=" << f.top_via_transport << "/" << f.top_via_host << " from_tag=" << f.from_tag << " to_tag=" << f.to_tag
     << " call_id=" << f.call_id << " cseq=" << f.cseq_number << " " << f.cseq_method << " expires=" << f.expires
     << " contacts=[";
  for (const auto& c : f.contacts) {
    os << (c.star ? "*" : c.user + "@" + c.host + ":" + c.port) << ";expires=" << c.expires
       << ";instance=" << c.instance << " ";
  }
  return os << "]";
}

std::optional<Facts> ours(const std::string& text) {
  auto m = parse_message(text);
  if (!m) return std::nullopt;
  Facts f;
  f.is_request = m->is_request;
  f.status = m->status;
  f.method = std::string(m->method_text);
  if (m->is_request) {
    auto u = parse_uri(m->request_uri);
    if (!u) return std::nullopt;
    f.ruri_scheme = lower(std::string(u->scheme));
    f.ruri_user = std::string(u->user);
    f.ruri_host = std::string(u->host);
    f.ruri_port = u->port ? std::to_string(*u->port) : "";
  }
  const auto vias = via_values(*m);
  f.via_count = vias.size();
  if (!vias.empty()) {
    auto v = parse_via(vias[0]);
    if (!v) return std::nullopt;
    f.top_branch = std::string(v->branch());
    f.top_via_host = std::string(v->host);
    f.top_via_transport = std::string(v->transport);
  }
  if (auto from = parse_name_addr(m->value(HeaderType::From))) f.from_tag = std::string(from->tag());
  if (auto to = parse_name_addr(m->value(HeaderType::To))) f.to_tag = std::string(to->tag());
  f.call_id = std::string(m->value(HeaderType::CallId));
  if (auto c = parse_cseq(m->value(HeaderType::CSeq))) {
    f.cseq_number = std::to_string(c->number);
    f.cseq_method = std::string(c->method);
  }
  for (const auto& h : m->headers) {
    if (h.type != HeaderType::Contact) continue;
    for (auto v : split_list(h.value)) {
      auto na = parse_name_addr(v);
      if (!na) return std::nullopt;
      Facts::ContactFacts c;
      c.star = na->star;
      if (!na->star) {
        auto u = parse_uri(na->uri);
        if (!u) return std::nullopt;
        c.user = std::string(u->user);
        c.host = std::string(u->host);
        c.port = u->port ? std::to_string(*u->port) : "";
        if (const Param* p = find_param(na->params, "expires")) c.expires = std::string(p->value);
        if (const Param* p = find_param(na->params, "+sip.instance")) c.instance = std::string(p->value);
      }
      f.contacts.push_back(c);
    }
  }
  f.expires = std::string(trim(m->value(HeaderType::Expires)));
  return f;
}

std::optional<Facts> theirs(const std::string& text) {
  osip_message_t* raw = nullptr;
  if (osip_message_init(&raw) != 0) return std::nullopt;
  std::unique_ptr<osip_message_t, void (*)(osip_message_t*)> m(raw, osip_message_free);
  if (osip_message_parse(m.get(), text.data(), text.size()) != 0) return std::nullopt;
  Facts f;
  f.is_request = MSG_IS_REQUEST(m.get());
  f.status = f.is_request ? 0 : m->status_code;
  f.method = s(m->sip_method);
  if (f.is_request && m->req_uri) {
    f.ruri_scheme = lower(s(m->req_uri->scheme));
    f.ruri_user = s(m->req_uri->username);
    f.ruri_host = s(m->req_uri->host);
    f.ruri_port = s(m->req_uri->port);
  }
  f.via_count = static_cast<std::size_t>(osip_list_size(&m->vias));
  osip_via_t* via = nullptr;
  if (osip_message_get_via(m.get(), 0, &via) >= 0 && via) {
    osip_generic_param_t* branch = nullptr;
    if (osip_via_param_get_byname(via, const_cast<char*>("branch"), &branch) == 0 && branch)
      f.top_branch = s(branch->gvalue);
    f.top_via_host = s(via->host);
    f.top_via_transport = s(via->protocol);
  }
  osip_generic_param_t* tag = nullptr;
  if (m->from && osip_from_get_tag(m->from, &tag) == 0 && tag) f.from_tag = s(tag->gvalue);
  tag = nullptr;
  if (m->to && osip_to_get_tag(m->to, &tag) == 0 && tag) f.to_tag = s(tag->gvalue);
  if (m->call_id) f.call_id = s(m->call_id->number) + (m->call_id->host ? "@" + s(m->call_id->host) : "");
  if (m->cseq) {
    f.cseq_number = s(m->cseq->number);
    f.cseq_method = s(m->cseq->method);
  }
  for (int i = 0; i < osip_list_size(&m->contacts); ++i) {
    osip_contact_t* contact = nullptr;
    osip_message_get_contact(m.get(), i, &contact);
    if (!contact) continue;
    Facts::ContactFacts c;
    if (!contact->url && contact->displayname && std::string(contact->displayname) == "*") {
      c.star = true;
    } else if (contact->url) {
      c.user = s(contact->url->username);
      c.host = s(contact->url->host);
      c.port = s(contact->url->port);
      osip_generic_param_t* p = nullptr;
      if (osip_contact_param_get_byname(contact, const_cast<char*>("expires"), &p) == 0 && p) c.expires = s(p->gvalue);
      p = nullptr;
      if (osip_contact_param_get_byname(contact, const_cast<char*>("+sip.instance"), &p) == 0 && p) {
        c.instance = unquote(s(p->gvalue));
      }
    }
    f.contacts.push_back(c);
  }
  osip_header_t* expires = nullptr;
  if (osip_message_get_expires(m.get(), 0, &expires) >= 0 && expires) f.expires = s(expires->hvalue);
  return f;
}

std::vector<std::filesystem::path> corpus() {
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(VE_SIP_CORPUS)) {
    if (e.path().extension() == ".sip") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

class SipOsipDifferential : public ::testing::TestWithParam<std::filesystem::path> {
 protected:
  static void SetUpTestSuite() { parser_init(); }
};

TEST_P(SipOsipDifferential, BothParsersAgree) {
  std::ifstream in(GetParam(), std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string text = buf.str();
  auto a = ours(text);
  auto b = theirs(text);
  ASSERT_TRUE(b) << "osip2 rejects " << GetParam();
  ASSERT_TRUE(a) << "we reject " << GetParam();
  EXPECT_EQ(*a, *b) << "\n ours:   " << *a << "\n theirs: " << *b;
  // Sanity: the facts are not empty (the comparison would pass on two empty parses).
  EXPECT_FALSE(a->call_id.empty());
  EXPECT_GT(a->via_count, 0u);
}

INSTANTIATE_TEST_SUITE_P(Corpus, SipOsipDifferential, ::testing::ValuesIn(corpus()),
                         [](const ::testing::TestParamInfo<std::filesystem::path>& param_info) {
                           return param_info.param.stem().string();
                         });

}  // namespace
}  // namespace ve::sip
