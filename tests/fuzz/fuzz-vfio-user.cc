// libFuzzer target for the vfio-user server's message handling: framing (RecvMessage on a
// socketpair), every command handler, region dispatch into a test PCI device, and the NVMe
// PRP/SGL walkers. Nothing a client sends may crash the server.
//
// Build (clang 14, from the repository root):
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I. \
//     tests/fuzz/fuzz-vfio-user.cc hw/vfio-user/message.cc hw/vfio-user/dma.cc \
//     hw/vfio-user/server.cc hw/vfio-user/pci-config.cc hw/vfio-user/nvme-dptr.cc \
//     util/json.cc -o build/fuzz-vfio-user
//   build/fuzz-vfio-user -max_total_time=60
//
// Input: byte 0 selects the mode; the rest is
//   mode 0-1: a byte stream of vfio-user messages (VERSION is negotiated first in mode 0)
//   mode 2:   PRP/SGL walk parameters followed by guest memory contents.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

#include "hw/vfio-user/nvme-dptr.h"
#include "hw/vfio-user/server.h"
#include "tests/vfio-user/test-pci-device.h"

using namespace qzns::vfu;

namespace {

class BufferDma : public DmaSpace {
public:
    BufferDma(const uint8_t* d, size_t n) : mem_(d, d + n) {}
    qzns::Status Read(uint64_t iova, void* buf, size_t len) override {
        if (iova > mem_.size() || len > mem_.size() - iova) return qzns::Status::Error(EFAULT, "oob");
        std::memcpy(buf, mem_.data() + iova, len);
        return qzns::Status::Ok();
    }
    qzns::Status Write(uint64_t iova, const void* buf, size_t len) override {
        if (iova > mem_.size() || len > mem_.size() - iova) return qzns::Status::Error(EFAULT, "oob");
        std::memcpy(mem_.data() + iova, buf, len);
        return qzns::Status::Ok();
    }
    uint8_t* Translate(uint64_t, size_t, bool) override { return nullptr; }

private:
    std::vector<uint8_t> mem_;
};

void FuzzDptr(const uint8_t* data, size_t size) {
    if (size < 40) return;
    uint64_t prp1, prp2, len;
    std::memcpy(&prp1, data, 8);
    std::memcpy(&prp2, data + 8, 8);
    std::memcpy(&len, data + 16, 8);
    SglDescriptor sgl;
    std::memcpy(&sgl, data + 24, 16);
    len = len % (4u << 20);
    BufferDma dma(data + 40, size - 40);
    uint32_t page = 4096u << (prp1 & 3);
    DptrWalk w = WalkPrp(dma, prp1 & ~3ull, prp2, len, page);
    uint64_t total = 0;
    for (auto& s : w.segments) total += s.len;
    if (w.ok() && total != len) __builtin_trap();
    w = WalkSgl(dma, sgl, len, prp2 & 1, 256);
    total = 0;
    for (auto& s : w.segments) total += s.len;
    if (w.ok() && total != len) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    uint8_t mode = data[0] % 3;
    data++;
    size--;
    if (mode == 2) {
        FuzzDptr(data, size);
        return 0;
    }
    if (size > 60000) return 0;  // must fit in the socket buffer
    testing::TestPciDevice dev;
    ServerOptions opts;
    opts.request_timeout_ms = 1;
    VfioUserServer server(&dev, opts);
    dev.Attach(server.dma(), server.irq_sink());
    if (mode == 0) {
        Message v;
        v.hdr.flags.set(kFlagTypeCommand);
        v.hdr.command.set(uint16_t(Command::kVersion));
        v.payload.resize(sizeof(VersionPayload));
        v.hdr.msg_size.set(uint32_t(16 + v.payload.size()));
        (void)server.HandleMessage(v);
    }
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
    size_t off = 0;
    while (off < size) {
        ssize_t w = ::write(sv[0], data + off, size - off);
        if (w <= 0) break;
        off += size_t(w);
    }
    ::close(sv[0]);
    for (int i = 0; i < 10000; i++) {
        Message m;
        if (!RecvMessage(sv[1], 16 + 64 + (1u << 20), 16, &m).ok()) break;
        if (m.type() != kFlagTypeCommand) continue;
        auto r = server.HandleMessage(m);
        if (!r.ok()) break;  // the server would close the connection here
    }
    ::close(sv[1]);
    server.DropClient();
    return 0;
}
