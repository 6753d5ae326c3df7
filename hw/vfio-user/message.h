// Framing of vfio-user messages on a stream socket: a header, a payload, and file descriptors
// passed as SCM_RIGHTS ancillary data. Reading never trusts the peer: sizes are checked before
// anything is allocated and received descriptors are owned (closed) even on error.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

#include "hw/vfio-user/protocol.h"
#include "util/status.h"

namespace qzns::vfu {

// An owned file descriptor.
class UniqueFd {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept {
        if (this != &o) reset(std::exchange(o.fd_, -1));
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }
    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    int release() { return std::exchange(fd_, -1); }
    void reset(int fd = -1);

private:
    int fd_ = -1;
};

struct Message {
    MsgHeader hdr;
    std::vector<uint8_t> payload;  // msg_size - 16 bytes
    std::vector<UniqueFd> fds;

    uint16_t command() const { return hdr.command.get(); }
    uint16_t msg_id() const { return hdr.msg_id.get(); }
    uint32_t type() const { return hdr.flags.get() & kFlagTypeMask; }
    bool no_reply() const { return hdr.flags.get() & kFlagNoReply; }
    // The payload's first sizeof(T) bytes, copied, or false if the payload is shorter.
    template <typename T>
    bool Read(T* out, size_t at = 0) const {
        if (at > payload.size() || payload.size() - at < sizeof(T)) return false;
        std::memcpy(static_cast<void*>(out), payload.data() + at, sizeof(T));
        return true;
    }
};

// Bytes of a message ready to send (header filled in by the sender helpers).
struct OutMessage {
    MsgHeader hdr;
    std::vector<uint8_t> payload;
    std::vector<int> fds;  // borrowed; must stay open until sent

    template <typename T>
    void Append(const T& v) {
        const auto* p = reinterpret_cast<const uint8_t*>(&v);
        payload.insert(payload.end(), p, p + sizeof(T));
    }
    void Append(std::span<const uint8_t> bytes) {
        payload.insert(payload.end(), bytes.begin(), bytes.end());
    }
};

// Reads exactly one message. A clean EOF before the first byte gives ECONNRESET with message
// "closed"; anything the peer got wrong (msg_size < 16 or > max_size, more than max_fds
// descriptors, truncated ancillary data, EOF mid-message) gives EPROTO. On error the socket is
// no longer in sync and must be closed.
[[nodiscard]] Status RecvMessage(int sock, size_t max_size, size_t max_fds, Message* out);
// Writes a whole message; hdr.msg_size is set from the payload. fds go with the first byte.
[[nodiscard]] Status SendMessage(int sock, OutMessage& msg);

}  // namespace qzns::vfu
