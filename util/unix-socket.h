// Unix sockets the daemon listens on (QMP, vfio-user) hand whoever connects control of the
// daemon or of a guest's device, so only their owner may connect.
#pragma once

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "util/status.h"

namespace qzns {

// Call on the socket before bind(). Linux gives the socket file, at bind, the mode of the
// socket's inode less the umask, so the file is 0600 from the moment it exists: no window in
// which another user can connect, and no umask change, which would race every other thread
// of the process that creates files.
[[nodiscard]] inline Status RestrictSocketToOwner(int fd, const std::string& path) {
    if (fchmod(fd, S_IRUSR | S_IWUSR) != 0)
        return Status::Error(errno, "cannot make socket " + path + " private (mode 0600): " + std::strerror(errno));
    return Status::Ok();
}

}  // namespace qzns
