// Driving a VfioUserServer without a socket, as the unit tests do: a payload from a packed
// struct, and one command message handed to the server as its socket loop would.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <utility>
#include <vector>

#include "hw/vfio-user/server.h"

namespace qzns::vfu::testing {

template <typename T>
std::vector<uint8_t> Raw(const T& v) {
    std::vector<uint8_t> b(sizeof(T));
    std::memcpy(b.data(), &v, sizeof(T));
    return b;
}

// Returns the reply's errno (0: success; -1: the server failed or sent no reply). The reply is
// moved to *reply when one is given.
inline int CallServer(VfioUserServer& server, Command cmd, std::vector<uint8_t> payload, int fd = -1,
                      OutMessage* reply = nullptr) {
    Message m;
    m.hdr.command.set(uint16_t(cmd));
    m.hdr.msg_size.set(uint32_t(16 + payload.size()));
    m.payload = std::move(payload);
    if (fd >= 0) m.fds.emplace_back(fd);
    auto r = server.HandleMessage(m);
    EXPECT_TRUE(r.ok()) << r.status().message();
    if (!r.ok() || !r->has_value()) return -1;
    const int err = ((*r)->hdr.flags.get() & kFlagError) ? int((*r)->hdr.error.get()) : 0;
    if (reply != nullptr) *reply = std::move(**r);
    return err;
}

}  // namespace qzns::vfu::testing
