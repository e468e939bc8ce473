// The link monitor: an rtnetlink socket subscribed to RTNLGRP_LINK, read on the io_context
// through a stream_descriptor (never blocks the loop). Keeps a table by ifindex so that a
// message can be told apart as added / changed / renamed / removed. On socket overflow (ENOBUFS,
// events were lost) the table is re-read with a dump and the differences are reported.
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <unistd.h>

#include <sys/socket.h>

#include <array>
#include <cstring>
#include <map>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <fmt/format.h>
#include <netlink/attr.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>

#include "net/net.hpp"
#include "ve/netlink.hpp"

namespace ve::net {

// IFF_LOWER_UP (carrier) lives in <linux/if.h>, which clashes with <net/if.h>.
constexpr unsigned kIffLowerUp = 1U << 16;

namespace {

using nl::CbPtr;
using nl::MsgPtr;
using nl::SockPtr;

struct Entry {
  std::string name;
  bool admin_up = false;
  bool carrier = false;
};

// Decodes one RTM_NEWLINK/RTM_DELLINK. Bridge-family copies (AF_BRIDGE) are skipped: the
// AF_UNSPEC message about the same link carries what we need.
std::optional<std::pair<bool, std::pair<int, Entry>>> decode_link(nlmsghdr* h) {
  if (h->nlmsg_type != RTM_NEWLINK && h->nlmsg_type != RTM_DELLINK) return std::nullopt;
  if (!nlmsg_valid_hdr(h, sizeof(ifinfomsg))) return std::nullopt;
  const auto* ifi = static_cast<const ifinfomsg*>(nlmsg_data(h));
  if (ifi->ifi_family == AF_BRIDGE) return std::nullopt;
  nlattr* tb[IFLA_MAX + 1] = {};
  if (nlmsg_parse(h, sizeof(ifinfomsg), tb, IFLA_MAX, nullptr) < 0) return std::nullopt;
  Entry e;
  if (tb[IFLA_IFNAME] != nullptr) {
    const auto* s = static_cast<const char*>(nla_data(tb[IFLA_IFNAME]));
    e.name.assign(s, strnlen(s, static_cast<std::size_t>(nla_len(tb[IFLA_IFNAME]))));
  }
  e.admin_up = (ifi->ifi_flags & IFF_UP) != 0;
  e.carrier = (ifi->ifi_flags & kIffLowerUp) != 0;  // the kernel's netif_carrier_ok()
  return std::make_pair(h->nlmsg_type == RTM_DELLINK, std::make_pair(ifi->ifi_index, std::move(e)));
}

LinkEvent to_event(LinkEvent::Type type, int ifindex, const Entry& e) {
  LinkEvent ev;
  ev.type = type;
  ev.ifindex = ifindex;
  ev.name = e.name;
  ev.admin_up = e.admin_up;
  ev.carrier = e.carrier;
  return ev;
}

}  // namespace

struct LinkMonitor::Impl : std::enable_shared_from_this<LinkMonitor::Impl> {
  explicit Impl(boost::asio::io_context& io) : stream(io) {}

  boost::asio::posix::stream_descriptor stream;
  SockPtr events;  // the subscription
  SockPtr query;   // for dumps
  CbPtr event_cb;
  Handler on_event;
  std::map<int, Entry> table;
  std::uint64_t messages = 0;
  std::uint64_t resync_count = 0;
  bool stopped = false;

  // Applies one kernel message to the table and reports what changed.
  void on_message(bool removed, int ifindex, Entry e, bool report) {
    ++messages;
    auto it = table.find(ifindex);
    if (removed) {
      if (it == table.end()) return;
      LinkEvent ev = to_event(LinkEvent::Type::Removed, ifindex, it->second);
      ev.admin_up = ev.carrier = false;
      table.erase(it);
      if (report && on_event) on_event(ev);
      return;
    }
    if (it == table.end()) {
      table.emplace(ifindex, e);
      if (report && on_event) on_event(to_event(LinkEvent::Type::Added, ifindex, e));
      return;
    }
    Entry& old = it->second;
    if (e.name.empty()) e.name = old.name;
    if (old.name == e.name && old.admin_up == e.admin_up && old.carrier == e.carrier) return;  // no news
    LinkEvent ev = to_event(LinkEvent::Type::Changed, ifindex, e);
    if (old.name != e.name) ev.old_name = old.name;
    old = e;
    if (report && on_event) on_event(ev);
  }

  int dump_into(std::map<int, Entry>& out) {
    MsgPtr m(nlmsg_alloc_simple(RTM_GETLINK, NLM_F_DUMP));
    if (!m) return -NLE_NOMEM;
    ifinfomsg ifi{};
    ifi.ifi_family = AF_UNSPEC;
    if (nlmsg_append(m.get(), &ifi, sizeof ifi, NLMSG_ALIGNTO) < 0) return -NLE_NOMEM;
    CbPtr cb(nl_cb_alloc(NL_CB_DEFAULT));
    if (!cb) return -NLE_NOMEM;
    nl_cb_set(
        cb.get(), NL_CB_VALID, NL_CB_CUSTOM,
        [](nl_msg* msg, void* arg) -> int {
          if (auto d = decode_link(nlmsg_hdr(msg)); d && !d->first)
            (*static_cast<std::map<int, Entry>*>(arg))[d->second.first] = d->second.second;
          return NL_OK;
        },
        &out);
    if (int err = nl_send_auto(query.get(), m.get()); err < 0) return err;
    return nl_recvmsgs(query.get(), cb.get());
  }

  // Lost events: re-read everything and report the differences as if they had arrived.
  void resync() {
    ++resync_count;
    std::map<int, Entry> now;
    if (dump_into(now) < 0) return;
    std::vector<int> gone;
    for (const auto& [idx, e] : table)
      if (now.count(idx) == 0) gone.push_back(idx);
    for (int idx : gone) on_message(true, idx, {}, true);
    for (auto& [idx, e] : now) on_message(false, idx, e, true);
  }

  void do_wait() {
    stream.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                      [self = shared_from_this()](const boost::system::error_code& ec) { self->on_readable(ec); });
  }

  void on_readable(const boost::system::error_code& ec) {
    if (ec || stopped) return;  // operation_aborted: stop()
    // Drain everything queued; the socket is non-blocking so this returns on EAGAIN.
    for (;;) {
      int err = nl_recvmsgs(events.get(), event_cb.get());
      if (err >= 0) continue;
      if (err == -NLE_AGAIN) break;
      if (err == -NLE_NOMEM) {  // ENOBUFS: the kernel dropped events for us
        // What is still queued is older than the dump we are about to take: discard it, so it
        // cannot roll the table back afterwards.
        std::array<char, 8192> junk{};
        while (::recv(nl_socket_get_fd(events.get()), junk.data(), junk.size(), MSG_DONTWAIT) > 0) {
        }
        resync();
        continue;
      }
      break;  // other errors: keep listening, the next message may be fine
    }
    if (!stopped) do_wait();
  }
};

LinkMonitor::LinkMonitor(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
LinkMonitor::~LinkMonitor() { stop(); }

Result<std::unique_ptr<LinkMonitor>, NetError> LinkMonitor::start(boost::asio::io_context& io, Handler on_event,
                                                                  int receive_buffer) {
  auto impl = std::make_shared<Impl>(io);
  impl->on_event = std::move(on_event);
  impl->events.reset(nl_socket_alloc());
  impl->query.reset(nl_socket_alloc());
  impl->event_cb.reset(nl_cb_alloc(NL_CB_DEFAULT));
  if (!impl->events || !impl->query || !impl->event_cb)
    return unexpected(NetError{"link monitor", ENOMEM, "out of memory"});
  nl_sock* ev = impl->events.get();
  nl_socket_disable_seq_check(ev);  // notifications carry no sequence of ours
  nl_socket_disable_auto_ack(ev);
  if (int err = nl_connect(ev, NETLINK_ROUTE); err < 0)
    return unexpected(NetError{"link monitor connect", -err, nl_geterror(err)});
  if (int err = nl_connect(impl->query.get(), NETLINK_ROUTE); err < 0)
    return unexpected(NetError{"link monitor connect", -err, nl_geterror(err)});
  // Subscribe before the first dump so nothing falls between them.
  if (int err = nl_socket_add_memberships(ev, RTNLGRP_LINK, 0); err < 0)
    return unexpected(NetError{"subscribe RTNLGRP_LINK", -err, nl_geterror(err)});
  (void)nl_socket_set_buffer_size(ev, receive_buffer, 0);
  if (int err = nl_socket_set_nonblocking(ev); err < 0)
    return unexpected(NetError{"link monitor nonblocking", -err, nl_geterror(err)});
  Impl* raw = impl.get();
  nl_cb_set(
      impl->event_cb.get(), NL_CB_VALID, NL_CB_CUSTOM,
      [](nl_msg* msg, void* arg) -> int {
        auto* self = static_cast<Impl*>(arg);
        if (auto d = decode_link(nlmsg_hdr(msg)))
          self->on_message(d->first, d->second.first, std::move(d->second.second), true);
        return NL_OK;
      },
      raw);
  if (int err = impl->dump_into(impl->table); err < 0)
    return unexpected(NetError{"read links", -err, nl_geterror(err)});
  // The stream_descriptor must not close the fd: the nl_sock owns it.
  int fd = nl_socket_get_fd(ev);
  boost::system::error_code ec;
  impl->stream.assign(::dup(fd), ec);
  if (ec) return unexpected(NetError{"link monitor assign", ec.value(), ec.message()});
  impl->do_wait();
  return std::unique_ptr<LinkMonitor>(new LinkMonitor(std::move(impl)));
}

void LinkMonitor::stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  boost::system::error_code ec;
  impl_->stream.cancel(ec);
  impl_->stream.close(ec);
}

std::vector<LinkEvent> LinkMonitor::links() const {
  std::vector<LinkEvent> out;
  for (const auto& [idx, e] : impl_->table) out.push_back(to_event(LinkEvent::Type::Added, idx, e));
  return out;
}

std::optional<LinkEvent> LinkMonitor::find(const std::string& name) const {
  for (const auto& [idx, e] : impl_->table)
    if (e.name == name) return to_event(LinkEvent::Type::Added, idx, e);
  return std::nullopt;
}

std::uint64_t LinkMonitor::messages_seen() const { return impl_->messages; }
std::uint64_t LinkMonitor::resyncs() const { return impl_->resync_count; }

}  // namespace ve::net
