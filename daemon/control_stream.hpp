#pragma once
// Streaming replies on the control socket (see ControlStream in component.hpp): the connection
// is handed over from the line session once a stream command is accepted.
#include <functional>
#include <memory>

#include <boost/asio/local/stream_protocol.hpp>

#include "daemon/component.hpp"
#include "ve/base64.hpp"

namespace ve::daemon {

// Runs `handler` for `args` on `socket`. Writes the error line and closes when the handler
// refuses; otherwise the header, the chunks and the end line. `released` runs when the
// connection is gone.
void start_control_stream(boost::asio::local::stream_protocol::socket socket, const StreamHandler& handler,
                          const nlohmann::json& args, std::function<void()> released);

}  // namespace ve::daemon
