// The message catalogue of libdhcp_voiceedge.so. Each ID has its text (Kea substitutes %1, %2...)
// and, in the comment above it, when it appears. Kea's hook loader installs the texts into its
// dictionary after load().
#include "kea-hooks/log.hpp"

#include <log/message_initializer.h>

namespace ve::kea_hooks {

isc::log::Logger hook_logger("voiceedge-hooks");

// Info, once per (re)load of the library by Kea: the site file was read.
const isc::log::MessageID VOICEEDGE_LOAD_OK = "VOICEEDGE_LOAD_OK";
// Error: load() refused to start (bad or missing site file, bad parameters, wrong process). Kea
// rejects the configuration that names the library; the reason is in %1.
const isc::log::MessageID VOICEEDGE_LOAD_ERROR = "VOICEEDGE_LOAD_ERROR";
// Info: Kea unloaded the library (shutdown or reconfiguration), with report counters.
const isc::log::MessageID VOICEEDGE_UNLOAD = "VOICEEDGE_UNLOAD";
// Error: a callout caught an exception. The packet is still answered, without our options.
const isc::log::MessageID VOICEEDGE_CALLOUT_ERROR = "VOICEEDGE_CALLOUT_ERROR";
// Debug: options 150/66 were added to a phone's response.
const isc::log::MessageID VOICEEDGE_PHONE_OPTIONS = "VOICEEDGE_PHONE_OPTIONS";
// Debug: a phone got an address in a subnet the site file does not describe: no option 150.
const isc::log::MessageID VOICEEDGE_PHONE_NO_SUBNET = "VOICEEDGE_PHONE_NO_SUBNET";
// Debug: a lease report could not be handed to the daemon (not running, not reading, or the
// hook's own queue is full).
const isc::log::MessageID VOICEEDGE_REPORT_DROPPED = "VOICEEDGE_REPORT_DROPPED";
// Info, after every (re)configuration: Kea's raw sockets now drop 802.1Q-tagged frames
// (vlan_guard.hpp), with the interfaces.
const isc::log::MessageID VOICEEDGE_VLAN_GUARD = "VOICEEDGE_VLAN_GUARD";
// Error: one raw socket could not be guarded: on that interface Kea may also answer frames that
// arrived tagged for a VLAN, from the interface's own (untagged) subnet.
const isc::log::MessageID VOICEEDGE_VLAN_GUARD_FAILED = "VOICEEDGE_VLAN_GUARD_FAILED";
// Info, after every (re)configuration: the receive buffer of Kea's raw sockets
// (dhcp.kea.socket_receive_buffer_kib, receive_buffer.hpp).
const isc::log::MessageID VOICEEDGE_RECEIVE_BUFFER = "VOICEEDGE_RECEIVE_BUFFER";
// Warning: a raw socket's receive buffer could not be raised as asked: a burst of DISCOVERs
// larger than it is dropped by the kernel (those phones retransmit after 4 s).
const isc::log::MessageID VOICEEDGE_RECEIVE_BUFFER_SHORT = "VOICEEDGE_RECEIVE_BUFFER_SHORT";

namespace {

// ID, text, ID, text..., nullptr: the layout isc::log::MessageInitializer expects.
const char* message_texts[] = {
    "VOICEEDGE_LOAD_OK",
    "voiceedge hooks library loaded: site %1, %2 subnet(s), lease reports to %3",
    "VOICEEDGE_LOAD_ERROR",
    "voiceedge hooks library failed to load: %1",
    "VOICEEDGE_UNLOAD",
    "voiceedge hooks library unloaded: %1 lease reports sent, %2 dropped",
    "VOICEEDGE_CALLOUT_ERROR",
    "voiceedge callout %1 failed, packet answered without voiceedge options: %2",
    "VOICEEDGE_PHONE_OPTIONS",
    "phone %1 (%2) in %3: option 150 [%4], option 66 %5",
    "VOICEEDGE_PHONE_NO_SUBNET",
    "phone %1 (%2): no site subnet for %3, no TFTP options added",
    "VOICEEDGE_REPORT_DROPPED",
    "lease report %1 for %2 not delivered to %3: %4",
    "VOICEEDGE_VLAN_GUARD",
    "%1 raw socket(s) drop 802.1Q-tagged frames (the VLAN interface answers those): %2",
    "VOICEEDGE_VLAN_GUARD_FAILED",
    "raw socket on %1 not guarded against tagged frames, Kea may answer them from its untagged subnet: %2",
    "VOICEEDGE_RECEIVE_BUFFER",
    "%1 raw socket(s) have a %2-byte receive buffer (dhcp.kea.socket_receive_buffer_kib): %3",
    "VOICEEDGE_RECEIVE_BUFFER_SHORT",
    "raw socket on %1: receive buffer not raised to %2 bytes, a larger burst of DISCOVERs is dropped: %3",
    nullptr,
};

const isc::log::MessageInitializer message_initializer(message_texts);

}  // namespace
}  // namespace ve::kea_hooks
