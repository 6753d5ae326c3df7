#include "hw/vfio-user/message.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace qzns::vfu {

void UniqueFd::reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
}

namespace {

// Largest number of descriptors we make room for in one recvmsg; more than the caller's
// max_fds is a protocol error, but we must still receive (and close) them.
constexpr size_t kFdRoom = 64;

Status TakeFds(msghdr& mh, std::vector<UniqueFd>& fds) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            fds.emplace_back(fd);
        }
    }
    if (mh.msg_flags & MSG_CTRUNC) return Status::Error(EPROTO, "too many file descriptors");
    return Status::Ok();
}

// Reads exactly len bytes. *got_any tells whether EOF came before the first byte.
Status RecvAll(int sock, uint8_t* buf, size_t len, std::vector<UniqueFd>& fds, bool* eof_at_start) {
    size_t done = 0;
    alignas(cmsghdr) char control[CMSG_SPACE(kFdRoom * sizeof(int))];
    while (done < len) {
        iovec iov{buf + done, len - done};
        msghdr mh{};
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = control;
        mh.msg_controllen = sizeof(control);
        ssize_t r = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
        if (r < 0) {
            if (errno == EINTR) continue;
            return Status::Error(errno, std::string("recvmsg: ") + std::strerror(errno));
        }
        QZNS_TRY(TakeFds(mh, fds));
        if (r == 0) {
            if (done == 0 && eof_at_start) *eof_at_start = true;
            return Status::Error(done == 0 ? ECONNRESET : EPROTO,
                                 done == 0 ? "closed" : "connection closed mid-message");
        }
        done += static_cast<size_t>(r);
    }
    return Status::Ok();
}

}  // namespace

Status RecvMessage(int sock, size_t max_size, size_t max_fds, Message* out) {
    out->payload.clear();
    out->fds.clear();
    bool eof_at_start = false;
    Status st = RecvAll(sock, reinterpret_cast<uint8_t*>(&out->hdr), sizeof(MsgHeader), out->fds,
                        &eof_at_start);
    if (!st.ok()) {
        if (eof_at_start) return st;
        return st.err() == ECONNRESET ? Status::Error(EPROTO, "connection closed mid-header") : st;
    }
    uint32_t size = out->hdr.msg_size.get();
    if (size < sizeof(MsgHeader) || size > max_size) {
        return Status::Error(EPROTO, "bad msg_size " + std::to_string(size) + " (limit " +
                                         std::to_string(max_size) + ")");
    }
    out->payload.resize(size - sizeof(MsgHeader));
    if (!out->payload.empty()) {
        st = RecvAll(sock, out->payload.data(), out->payload.size(), out->fds, nullptr);
        if (!st.ok()) {
            return st.err() == ECONNRESET ? Status::Error(EPROTO, "connection closed mid-message")
                                          : st;
        }
    }
    if (out->fds.size() > max_fds) {
        return Status::Error(EPROTO, std::to_string(out->fds.size()) +
                                         " file descriptors in one message (limit " +
                                         std::to_string(max_fds) + ")");
    }
    return Status::Ok();
}

Status SendMessage(int sock, OutMessage& msg) {
    if (msg.fds.size() > kFdRoom) return Status::Error(EINVAL, "too many fds to send");
    msg.hdr.msg_size.set(static_cast<uint32_t>(sizeof(MsgHeader) + msg.payload.size()));
    iovec iov[2] = {{&msg.hdr, sizeof(MsgHeader)}, {msg.payload.data(), msg.payload.size()}};
    size_t total = sizeof(MsgHeader) + msg.payload.size();
    size_t sent = 0;
    alignas(cmsghdr) char control[CMSG_SPACE(kFdRoom * sizeof(int))];
    bool fds_pending = !msg.fds.empty();
    while (sent < total) {
        iovec cur[2];
        int n = 0;
        size_t skip = sent;
        for (auto& v : iov) {
            if (skip >= v.iov_len) {
                skip -= v.iov_len;
                continue;
            }
            cur[n].iov_base = static_cast<uint8_t*>(v.iov_base) + skip;
            cur[n].iov_len = v.iov_len - skip;
            skip = 0;
            n++;
        }
        msghdr mh{};
        mh.msg_iov = cur;
        mh.msg_iovlen = static_cast<size_t>(n);
        if (fds_pending) {
            size_t bytes = msg.fds.size() * sizeof(int);
            mh.msg_control = control;
            mh.msg_controllen = CMSG_SPACE(bytes);
            std::memset(control, 0, sizeof(control));
            cmsghdr* c = CMSG_FIRSTHDR(&mh);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(bytes);
            std::memcpy(CMSG_DATA(c), msg.fds.data(), bytes);
        }
        ssize_t r = ::sendmsg(sock, &mh, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR) continue;
            return Status::Error(errno, std::string("sendmsg: ") + std::strerror(errno));
        }
        fds_pending = false;
        sent += static_cast<size_t>(r);
    }
    return Status::Ok();
}

const char* CommandName(uint16_t command) {
    switch (static_cast<Command>(command)) {
        case Command::kVersion: return "VERSION";
        case Command::kDmaMap: return "DMA_MAP";
        case Command::kDmaUnmap: return "DMA_UNMAP";
        case Command::kDeviceGetInfo: return "DEVICE_GET_INFO";
        case Command::kDeviceGetRegionInfo: return "DEVICE_GET_REGION_INFO";
        case Command::kDeviceGetRegionIoFds: return "DEVICE_GET_REGION_IO_FDS";
        case Command::kDeviceGetIrqInfo: return "DEVICE_GET_IRQ_INFO";
        case Command::kDeviceSetIrqs: return "DEVICE_SET_IRQS";
        case Command::kRegionRead: return "REGION_READ";
        case Command::kRegionWrite: return "REGION_WRITE";
        case Command::kDmaRead: return "DMA_READ";
        case Command::kDmaWrite: return "DMA_WRITE";
        case Command::kDeviceReset: return "DEVICE_RESET";
        case Command::kDirtyPages: return "DIRTY_PAGES";
        case Command::kRegionWriteMulti: return "REGION_WRITE_MULTI";
        case Command::kDeviceFeature: return "DEVICE_FEATURE";
        case Command::kMigDataRead: return "MIG_DATA_READ";
        case Command::kMigDataWrite: return "MIG_DATA_WRITE";
    }
    return "UNKNOWN";
}

}  // namespace qzns::vfu
