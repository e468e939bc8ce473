#pragma once
// Keeps Kea from answering 802.1Q-tagged frames on an interface's raw socket.
//
// Kea's raw (AF_PACKET, ETH_P_ALL) socket on an interface also sees frames that arrived there
// tagged for a VLAN: the kernel strips the tag into the packet's metadata before it hands the
// frame to packet sockets on the parent, and only then passes it to the VLAN interface. So with
// the voice subnet on eth1.100 and the data subnet untagged on eth1, a phone's tagged DISCOVER
// reaches Kea twice and Kea answers it twice, once untagged from the data subnet (found by the
// qemu proof, issue 22). Kea's own socket filter never looks at the tag. The guard puts a few
// instructions in front of Kea's filter that drop any frame carrying a VLAN ID (priority-tagged
// frames, VID 0, still pass: they belong to the untagged VLAN). The same frame still reaches
// Kea's socket on the VLAN interface, untagged there.
#include <linux/filter.h>

#include <span>
#include <string>
#include <vector>

namespace ve::kea_hooks {

// The instructions the guard puts in front of a filter.
std::span<const sock_filter> vlan_guard_prefix();

// `filter` with the guard in front (returned as it is when it already starts with the guard).
// Classic BPF jumps are relative and forward only, so the original program is unchanged.
std::vector<sock_filter> with_vlan_guard(std::span<const sock_filter> filter);

// What guard_packet_socket did.
enum class GuardOutcome { Guarded, AlreadyGuarded, NotAPacketSocket, Failed };

// Reads the socket's classic filter (SO_GET_FILTER; none = accept all), puts the guard in front
// and attaches the result. `error` says why on Failed.
GuardOutcome guard_packet_socket(int fd, std::string& error);

}  // namespace ve::kea_hooks
