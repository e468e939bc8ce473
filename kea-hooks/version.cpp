// The one symbol Kea requires of every hooks library: the hooks API version it was built against.
#include <hooks/hooks.h>

extern "C" {

int version() { return KEA_HOOKS_VERSION; }

}  // extern "C"
