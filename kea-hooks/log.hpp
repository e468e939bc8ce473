#pragma once
// Kea-side logging of the hooks library: one isc::log logger and our message IDs (VOICEEDGE_...).
// Messages go through Kea's own logging, so they land wherever the Kea config sends its logs.
#include <log/logger.h>
#include <log/macros.h>
#include <log/message_types.h>

namespace ve::kea_hooks {

// Kea's logging needs a namespace-scope logger object (it is looked up by name lazily); this is
// the library's one unavoidable global, as in every Kea hooks library.
extern isc::log::Logger hook_logger;

// Debug level for per-packet lines (Kea's DBGLVL_PKT_HANDLING is 55 in 2.2).
inline constexpr int kDebugPacket = 55;

extern const isc::log::MessageID VOICEEDGE_LOAD_OK;
extern const isc::log::MessageID VOICEEDGE_LOAD_ERROR;
extern const isc::log::MessageID VOICEEDGE_UNLOAD;
extern const isc::log::MessageID VOICEEDGE_CALLOUT_ERROR;
extern const isc::log::MessageID VOICEEDGE_PHONE_OPTIONS;
extern const isc::log::MessageID VOICEEDGE_PHONE_NO_SUBNET;
extern const isc::log::MessageID VOICEEDGE_REPORT_DROPPED;
extern const isc::log::MessageID VOICEEDGE_VLAN_GUARD;
extern const isc::log::MessageID VOICEEDGE_VLAN_GUARD_FAILED;
extern const isc::log::MessageID VOICEEDGE_RECEIVE_BUFFER;
extern const isc::log::MessageID VOICEEDGE_RECEIVE_BUFFER_SHORT;

}  // namespace ve::kea_hooks
