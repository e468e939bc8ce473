// SEP<MAC>.cnf.xml and XMLDefault.cnf.xml from the site file, written with libxml2's xmlTextWriter
// so every value is escaped. Shape follows the public CUCM / usecallmanager.nz phone config layout.
#include <cstdint>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <libxml/xmlwriter.h>

#include "provision/provision.hpp"

namespace ve::provision {

namespace {

struct BufferFree {
  void operator()(xmlBuffer* b) const { xmlBufferFree(b); }
};
struct WriterFree {
  void operator()(xmlTextWriter* w) const { xmlFreeTextWriter(w); }
};

const xmlChar* x(const char* s) { return reinterpret_cast<const xmlChar*>(s); }

// A thin RAII wrapper: elements open/close in pairs, text is always escaped by libxml2.
class XmlWriter {
 public:
  XmlWriter() : buffer_(xmlBufferCreate()) {
    writer_.reset(xmlNewTextWriterMemory(buffer_.get(), 0));
    xmlTextWriterSetIndent(writer_.get(), 1);
    xmlTextWriterSetIndentString(writer_.get(), x("  "));
    xmlTextWriterStartDocument(writer_.get(), nullptr, "UTF-8", nullptr);
  }
  void open(const char* name) { xmlTextWriterStartElement(writer_.get(), x(name)); }
  void attribute(const char* name, const std::string& value) {
    xmlTextWriterWriteAttribute(writer_.get(), x(name), x(value.c_str()));
  }
  void close() { xmlTextWriterEndElement(writer_.get()); }
  void element(const char* name, const std::string& text) {
    xmlTextWriterWriteElement(writer_.get(), x(name), x(text.c_str()));
  }
  void element(const char* name, long long value) { element(name, std::to_string(value)); }
  std::string finish() {
    xmlTextWriterEndDocument(writer_.get());
    writer_.reset();  // flushes into the buffer
    return std::string(reinterpret_cast<const char*>(xmlBufferContent(buffer_.get())),
                       static_cast<std::size_t>(xmlBufferLength(buffer_.get())));
  }

 private:
  std::unique_ptr<xmlBuffer, BufferFree> buffer_;
  std::unique_ptr<xmlTextWriter, WriterFree> writer_;
};

// FNV-1a 64: a stable fingerprint of the rendered content (not a security function).
std::string fingerprint(const std::string& text) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return fmt::format("{:016x}", h);
}

void write_call_manager_group(XmlWriter& w, const config::SiteConfig& site) {
  w.open("callManagerGroup");
  w.element("name", site.site.name);
  w.element("tftpDefault", "true");
  w.open("members");
  for (const auto& cm : site.provisioning.call_manager_group) {
    w.open("member");
    w.attribute("priority", std::to_string(cm.priority));
    w.open("callManager");
    w.element("name", cm.name);
    w.element("description", cm.name);
    w.open("ports");
    w.element("ethernetPhonePort", 2000);
    w.element("sipPort", cm.sip_port);
    w.element("securedSipPort", 5061);
    w.close();  // ports
    w.element("processNodeName", cm.host);
    w.close();  // callManager
    w.close();  // member
  }
  w.close();  // members
  w.close();  // callManagerGroup
}

void write_sip_stack(XmlWriter& w, const config::SiteConfig& site) {
  w.open("sipStack");
  w.element("sipInviteRetx", 6);
  w.element("sipRetx", 10);
  w.element("timerInviteExpires", 180);
  w.element("timerRegisterExpires", site.sip.default_expires_s);
  w.element("timerRegisterDelta", 5);
  w.element("timerKeepAliveExpires", 120);
  w.element("timerSubscribeExpires", 120);
  w.element("timerSubscribeDelta", 5);
  w.element("timerT1", 500);
  w.element("timerT2", 4000);
  w.element("maxRedirects", 70);
  w.element("remotePartyID", "true");
  w.element("userInfo", "None");
  w.close();
}

void write_line(XmlWriter& w, const config::SiteConfig& site, const config::Line& line) {
  const std::string label = line.display.empty() ? line.extension : line.display;
  const std::string auth = line.auth_user.empty() ? line.extension : line.auth_user;
  w.open("line");
  w.attribute("button", std::to_string(line.button));
  w.element("featureID", 9);
  w.element("featureLabel", label);
  w.element("proxy", "USECALLMANAGER");
  w.element("port", site.provisioning.call_manager_group.empty()
                        ? 5060
                        : site.provisioning.call_manager_group.front().sip_port);
  w.element("name", line.extension);
  w.element("displayName", label);
  w.open("autoAnswer");
  w.element("autoAnswerEnabled", 2);
  w.close();
  w.element("callWaiting", 3);
  w.element("authName", auth);
  w.element("authPassword", line.password.reveal());
  w.element("sharedLine", "false");
  w.element("messageWaitingLampPolicy", 3);
  w.element("ringSettingIdle", 4);
  w.element("ringSettingActive", 5);
  w.element("contact", line.extension);
  w.close();
}

std::string render_phone(const config::SiteConfig& site, const config::Phone& phone, const std::string& stamp) {
  XmlWriter w;
  w.open("device");
  w.element("fullConfig", "true");
  w.element("deviceProtocol", "SIP");
  w.element("sshUserId", "");
  w.element("sshPassword", "");
  w.element("ipAddressMode", 0);
  w.element("allowAutoConfig", "true");
  w.open("devicePool");
  w.element("revertPriority", 0);
  w.element("name", site.site.name);
  w.open("dateTimeSetting");
  w.element("name", site.site.timezone);
  w.element("dateTemplate", "D/M/Y");
  w.element("timeZone", site.site.timezone);
  w.element("olsonTimeZone", site.site.timezone);
  w.close();  // dateTimeSetting
  write_call_manager_group(w, site);
  w.close();  // devicePool

  w.open("sipProfile");
  w.open("sipProxies");
  w.element("registerWithProxy", "true");
  w.close();
  write_sip_stack(w, site);
  w.element("phoneLabel", phone.description);
  w.element("natEnabled", "false");
  w.open("sipLines");
  for (const auto& line : phone.lines) write_line(w, site, line);
  w.close();  // sipLines
  w.element("voipControlPort", 5060);
  w.element("startMediaPort", 16384);
  w.element("stopMediaPort", 32766);
  w.element("dscpForAudio", 184);
  w.element("dialTemplate", std::string(kDialTemplateFile));
  w.element("softKeyFile", std::string(kSoftKeyFile));
  w.close();  // sipProfile

  w.element("loadInformation", phone.load.empty() ? site.provisioning.default_load : phone.load);
  w.open("userLocale");
  w.element("name", site.site.locale);
  w.element("uid", 1);
  w.element("version", "1.0.0.0-1");
  w.element("winCharSet", "utf-8");
  w.close();
  const std::string network_locale = network_locale_for(site.site.locale);
  w.element("networkLocale", network_locale);
  w.open("networkLocaleInfo");
  w.element("name", network_locale);
  w.element("version", "1.0.0.0-1");
  w.close();
  w.element("deviceSecurityMode", 1);
  w.element("transportLayerProtocol", 1);
  w.element("encrConfig", "false");
  w.element("versionStamp", stamp);
  w.close();  // device
  return w.finish();
}

std::string render_default(const config::SiteConfig& site, const std::string& stamp) {
  XmlWriter w;
  w.open("Default");
  write_call_manager_group(w, site);
  w.element("loadInformation", site.provisioning.default_load);
  w.element("authenticationURL", "");
  w.element("directoryURL", "");
  w.element("servicesURL", "");
  w.element("versionStamp", stamp);
  w.close();
  return w.finish();
}

}  // namespace

std::string network_locale_for(std::string_view user_locale) {
  const auto underscore = user_locale.find('_');
  if (underscore == std::string_view::npos || underscore + 1 >= user_locale.size()) return "United_States";
  return std::string(user_locale.substr(underscore + 1));
}

// The stamp is a fingerprint of everything else in the file, so it changes exactly when the
// phone's rendered config does (the phone compares it to decide whether to apply the file).
std::string render_phone_config(const config::SiteConfig& site, const config::Phone& phone) {
  return render_phone(site, phone, fingerprint(render_phone(site, phone, "")));
}

std::string phone_config_version(const config::SiteConfig& site, const config::Phone& phone) {
  return fingerprint(render_phone(site, phone, ""));
}

std::string phone_load(const config::SiteConfig& site, const config::Phone& phone) {
  return phone.load.empty() ? site.provisioning.default_load : phone.load;
}

std::string render_default_config(const config::SiteConfig& site) {
  return render_default(site, fingerprint(render_default(site, "")));
}

}  // namespace ve::provision
