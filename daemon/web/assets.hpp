#pragma once
// The status page's style sheet and script, compiled into voiceedged from daemon/web/app.{css,js}
// (see daemon/CMakeLists.txt) so the page works offline and with no files installed.
#include <string_view>

namespace ve::daemon::web {

extern const std::string_view kAppCss;
extern const std::string_view kAppJs;

}  // namespace ve::daemon::web
