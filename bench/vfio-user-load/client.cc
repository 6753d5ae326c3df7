#include "bench/vfio-user-load/client.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

namespace qzns::load {

namespace vfu = qzns::vfu;

namespace {

// What QEMU 11.1 announces (tests/vfio-user/vfio_user_server_test.cc records it).
constexpr const char* kCaps =
    R"({"capabilities":{"max_msg_fds":16,"max_data_xfer_size":1048576,"pgsizes":4096,)"
    R"("max_dma_maps":65535,"write_multiple":true}})";

template <typename T>
void Put(vfu::OutMessage& m, const T& v) {
    m.Append(v);
}

}  // namespace

bool VfioUserClient::Call(vfu::Command cmd, vfu::OutMessage& m, bool posted, vfu::Message* reply,
                          std::string* err) {
    util::MutexLock lk(mu_);
    const uint16_t id = next_id_++;
    m.hdr = vfu::MsgHeader{};
    m.hdr.msg_id.set(id);
    m.hdr.command.set(static_cast<uint16_t>(cmd));
    m.hdr.flags.set(posted ? vfu::kFlagNoReply : 0);
    Status st = vfu::SendMessage(sock_.get(), m);
    if (!st.ok()) {
        *err = std::string(vfu::CommandName(static_cast<uint16_t>(cmd))) + ": " + st.message();
        return false;
    }
    if (posted) return true;
    vfu::Message local;
    vfu::Message* r = reply ? reply : &local;
    st = vfu::RecvMessage(sock_.get(), vfu::kMaxDataXferLimit + 4096, vfu::kMaxMsgFdsLimit, r);
    if (!st.ok()) {
        *err = std::string(vfu::CommandName(static_cast<uint16_t>(cmd))) + " reply: " + st.message();
        return false;
    }
    if (r->msg_id() != id || r->command() != static_cast<uint16_t>(cmd) || r->type() != vfu::kFlagTypeReply) {
        *err = std::string("reply out of order for ") + vfu::CommandName(static_cast<uint16_t>(cmd));
        return false;
    }
    if (r->hdr.flags.get() & vfu::kFlagError) {
        *err = std::string(vfu::CommandName(static_cast<uint16_t>(cmd))) + " failed: " +
               std::strerror(static_cast<int>(r->hdr.error.get()));
        return false;
    }
    return true;
}

bool VfioUserClient::Connect(const std::string& path, std::string* err) {
    {
        util::MutexLock lk(mu_);
        sock_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        if (!sock_.valid() || path.size() >= sizeof(a.sun_path)) {
            *err = "bad socket path " + path;
            return false;
        }
        std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
        if (::connect(sock_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
            *err = "connect " + path + ": " + std::strerror(errno);
            return false;
        }
    }
    vfu::OutMessage m;
    Put(m, vfu::VersionPayload{});
    m.Append(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(kCaps), std::strlen(kCaps) + 1));
    vfu::Message r;
    if (!Call(vfu::Command::kVersion, m, false, &r, err)) return false;
    vfu::VersionPayload v;
    if (!r.Read(&v) || v.major.get() != vfu::kVersionMajor) {
        *err = "server speaks another vfio-user major version";
        return false;
    }
    return true;
}

bool VfioUserClient::DmaMap(int fd, uint64_t offset, uint64_t iova, uint64_t size, std::string* err) {
    vfu::DmaMapPayload p;
    p.argsz.set(sizeof(p));
    p.flags.set(vfu::kDmaMapFlagRead | vfu::kDmaMapFlagWrite);
    p.offset.set(offset);
    p.addr.set(iova);
    p.size.set(size);
    vfu::OutMessage m;
    Put(m, p);
    m.fds.push_back(fd);
    return Call(vfu::Command::kDmaMap, m, false, nullptr, err);
}

uint32_t VfioUserClient::MsixVectors(std::string* err) {
    vfu::IrqInfoPayload p;
    p.argsz.set(sizeof(p));
    p.index.set(vfu::kPciMsixIrqIndex);
    vfu::OutMessage m;
    Put(m, p);
    vfu::Message r;
    if (!Call(vfu::Command::kDeviceGetIrqInfo, m, false, &r, err)) return 0;
    if (!r.Read(&p) || !(p.flags.get() & vfu::kIrqInfoFlagEventfd)) {
        *err = "MSI-X does not take eventfds";
        return 0;
    }
    return p.count.get();
}

bool VfioUserClient::SetMsixEventfds(const std::vector<int>& fds, std::string* err) {
    vfu::IrqSetPayload p;
    p.argsz.set(sizeof(p));
    p.flags.set(vfu::kIrqSetDataEventfd | vfu::kIrqSetActionTrigger);
    p.index.set(vfu::kPciMsixIrqIndex);
    p.start.set(0);
    p.count.set(static_cast<uint32_t>(fds.size()));
    vfu::OutMessage m;
    Put(m, p);
    m.fds = fds;
    return Call(vfu::Command::kDeviceSetIrqs, m, false, nullptr, err);
}

bool VfioUserClient::RegionRead(uint32_t region, uint64_t offset, std::span<uint8_t> out, std::string* err) {
    vfu::RegionAccessPayload p;
    p.offset.set(offset);
    p.region.set(region);
    p.count.set(static_cast<uint32_t>(out.size()));
    vfu::OutMessage m;
    Put(m, p);
    vfu::Message r;
    if (!Call(vfu::Command::kRegionRead, m, false, &r, err)) return false;
    if (r.payload.size() != sizeof(p) + out.size()) {
        *err = "short REGION_READ reply";
        return false;
    }
    std::memcpy(out.data(), r.payload.data() + sizeof(p), out.size());
    return true;
}

bool VfioUserClient::RegionWrite(uint32_t region, uint64_t offset, std::span<const uint8_t> data, bool posted,
                                 std::string* err) {
    vfu::RegionAccessPayload p;
    p.offset.set(offset);
    p.region.set(region);
    p.count.set(static_cast<uint32_t>(data.size()));
    vfu::OutMessage m;
    Put(m, p);
    m.Append(data);
    return Call(vfu::Command::kRegionWrite, m, posted, nullptr, err);
}

uint32_t VfioUserClient::Read32(uint32_t region, uint64_t offset, std::string* err) {
    uint32_t v = 0;
    if (!RegionRead(region, offset, {reinterpret_cast<uint8_t*>(&v), 4}, err)) return ~0u;
    return v;
}

uint64_t VfioUserClient::Read64(uint32_t region, uint64_t offset, std::string* err) {
    uint64_t v = 0;
    if (!RegionRead(region, offset, {reinterpret_cast<uint8_t*>(&v), 8}, err)) return ~0ull;
    return v;
}

bool VfioUserClient::Write32(uint32_t region, uint64_t offset, uint32_t v, bool posted, std::string* err) {
    return RegionWrite(region, offset, {reinterpret_cast<const uint8_t*>(&v), 4}, posted, err);
}

bool VfioUserClient::Write64(uint32_t region, uint64_t offset, uint64_t v, std::string* err) {
    return RegionWrite(region, offset, {reinterpret_cast<const uint8_t*>(&v), 8}, false, err);
}

}  // namespace qzns::load
