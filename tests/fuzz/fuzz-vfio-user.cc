// libFuzzer target for the vfio-user server: framing (RecvMessage on a socketpair), every
// command handler, region dispatch, the NVMe PRP/SGL walkers, and the NVMe PCI front end doing
// DMA into client memory the client shrinks under it. Nothing a client sends or does to its
// memory may crash the server (SIGBUS included).
//
// Build: `make fuzz` (the Makefile links it against the whole stack), then
//   build-fuzz/fuzz-vfio-user -max_total_time=60 tests/fuzz/corpus/fuzz-vfio-user
//
// Input: byte 0 selects the mode (mod 4); the rest is
//   mode 0-1: a byte stream of vfio-user messages to a test PCI device (VERSION is negotiated
//             first in mode 0)
//   mode 2:   PRP/SGL walk parameters followed by guest memory contents
//   mode 3:   a script of ops against an NVMe controller (NvmePciDevice over a small zoned
//             namespace) with guest memory in two memfds: #0 not sealed, so the script can
//             shrink it and grow it back at any point, also while the controller's workers copy
//             into it; #1 sealed against resizing (the zero-copy path). Ops, each one byte
//             (mod kOpCount) and its arguments, little endian:
//     kOpMsg      u16 n, n bytes: one vfio-user message (header and payload)
//     kOpMap      u8 which (bit 0 memfd, bit 1 writable), u8 file page, u8 pages, u16 IOVA page
//     kOpUnmap    u16 IOVA page, u8 pages (0: VFIO_DMA_UNMAP_FLAG_ALL)
//     kOpResize   u8 pages: ftruncate memfd #0 to that many pages
//     kOpPoke     u8 memfd, u32 offset (< 1 MiB), u16 n, n bytes written into the memfd
//     kOpReg      u8 register dword index (0x00..0x3c), u64 value (8 bytes for ASQ/ACQ, else 4)
//     kOpDoorbell u8 qid (bit 7: CQ head, else SQ tail), u16 value
//     kOpSettle   wait (at most 100 ms) until only AERs are in flight
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>

#include "block/block-backend.h"
#include "block/file-fault.h"
#include "block/file.h"
#include "block/qcow2/qcow2.h"
#include "hw/nvme/spec.h"
#include "hw/nvme/subsystem.h"
#include "hw/vfio-user/nvme-dptr.h"
#include "hw/vfio-user/nvme-pci.h"
#include "hw/vfio-user/server.h"
#include "tests/vfio-user/test-pci-device.h"

using namespace qzns::vfu;
using qzns::nvme::RequestState;

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
    static DmaSegment storage[4096];
    DmaSegmentList segs(storage);
    uint16_t st = WalkPrp(dma, prp1 & ~3ull, prp2, len, page, segs);
    uint64_t total = 0;
    for (auto& s : segs) total += s.len;
    if (st == dptr_sc::kSuccess && total != len) __builtin_trap();
    st = WalkSgl(dma, sgl, len, prp2 & 1, segs, 256);
    total = 0;
    for (auto& s : segs) total += s.len;
    if (st == dptr_sc::kSuccess && total != len) __builtin_trap();
}


// ---- mode 3 ----------------------------------------------------------------------------------

// One small zoned namespace for the whole run (like fuzz-nvme-sqe); each input gets a fresh
// PCI controller, server and guest memory.
struct NvmeWorld {
    std::unique_ptr<qzns::File> file = qzns::NewMemFile();
    std::shared_ptr<qzns::nvme::Subsystem> subsys;

    NvmeWorld() {
        qzns::qcow2::CreateOptions co;
        co.size = 8 << 20;
        co.cluster_size = 65536;
        qzns::qcow2::ZonedGeometry g;
        g.profile = qzns::qcow2::ZonedProfile::kZns;
        g.zone_size = 1 << 20;
        g.zone_capacity = 768 << 10;
        g.nr_conv_zones = 1;
        g.max_open_zones = 3;
        g.max_active_zones = 4;
        g.max_append_bytes = 32 << 10;
        co.zoned = g;
        if (!qzns::qcow2::Create(qzns::BorrowFile(file.get()), co).ok()) std::abort();
        auto img = qzns::qcow2::Image::Open(qzns::BorrowFile(file.get()), {.write = true}, nullptr);
        if (!img.ok()) std::abort();
        auto be = qzns::BlockBackend::OpenDriver(std::move(*img));
        if (!be.ok()) std::abort();
        qzns::nvme::SubsystemConfig cfg;
        cfg.nqn = "nqn.2026-11.io.qzns:fuzz-vfu";
        cfg.worker_threads = 2;
        cfg.ctrl.transport = qzns::nvme::TransportKind::kPci;
        cfg.ctrl.mdts = 4;
        cfg.ctrl.msix_vectors = 4;
        cfg.ctrl.max_io_queues = 4;
        auto s = qzns::nvme::Subsystem::Create(cfg);
        if (!s.ok()) std::abort();
        subsys = *s;
        if (!subsys->AddBackend(std::shared_ptr<qzns::BlockBackend>(std::move(*be)), {}).ok()) std::abort();
    }
};

enum Op : uint8_t { kOpMsg, kOpMap, kOpUnmap, kOpResize, kOpPoke, kOpReg, kOpDoorbell, kOpSettle, kOpCount };
constexpr size_t kMemfdMaxBytes = 1u << 20;
constexpr size_t kSealedBytes = 64 << 10;

class Script {
public:
    Script(const uint8_t* d, size_t n) : d_(d), n_(n) {}
    bool done() const { return pos_ >= n_; }
    // Missing bytes read as 0, so every prefix of an input is a valid script.
    uint64_t Take(size_t bytes) {
        uint64_t v = 0;
        for (size_t i = 0; i < bytes; i++, pos_++)
            if (pos_ < n_) v |= uint64_t(d_[pos_]) << (8 * i);
        return v;
    }
    std::span<const uint8_t> Bytes(size_t len) {
        size_t at = std::min(pos_, n_), k = std::min(len, n_ - at);
        pos_ += len;
        return {d_ + at, k};
    }

private:
    const uint8_t* d_;
    size_t n_;
    size_t pos_ = 0;
};

Message MakeCommand(Command cmd, std::vector<uint8_t> payload) {
    Message m;
    m.hdr.flags.set(kFlagTypeCommand);
    m.hdr.command.set(uint16_t(cmd));
    m.payload = std::move(payload);
    m.hdr.msg_size.set(uint32_t(16 + m.payload.size()));
    return m;
}
template <typename T>
std::vector<uint8_t> Raw(const T& v, std::span<const uint8_t> tail = {}) {
    std::vector<uint8_t> b(sizeof(T) + tail.size());
    std::memcpy(b.data(), &v, sizeof(T));
    if (!tail.empty()) std::memcpy(b.data() + sizeof(T), tail.data(), tail.size());
    return b;
}

// The server would close the connection when HandleMessage fails; the script goes on (the
// next message is as if from a reconnected client that skipped VERSION).
void Deliver(VfioUserServer& server, Message m) { (void)server.HandleMessage(m); }

void RegionWrite(VfioUserServer& server, uint64_t offset, uint64_t value, uint32_t size) {
    RegionAccessPayload a;
    a.offset.set(offset);
    a.region.set(kPciBar0RegionIndex);
    a.count.set(size);
    uint8_t v[8];
    std::memcpy(v, &value, 8);
    Deliver(server, MakeCommand(Command::kRegionWrite, Raw(a, std::span<const uint8_t>(v, size))));
}

void FuzzNvme(const uint8_t* data, size_t size) {
    static NvmeWorld* world = new NvmeWorld();
    NvmePciOptions po;
    po.msix_vectors = 4;
    po.max_queue_pairs = 5;
    auto dev = NvmePciDevice::Create(world->subsys, po);
    if (!dev.ok()) std::abort();
    ServerOptions opts;
    opts.request_timeout_ms = 1;
    VfioUserServer server(dev->get(), opts);
    (*dev)->Attach(server.dma(), server.irq_sink());
    int memfd[2] = {::memfd_create("fuzz-guest", MFD_CLOEXEC),
                    ::memfd_create("fuzz-guest-sealed", MFD_CLOEXEC | MFD_ALLOW_SEALING)};
    if (memfd[0] < 0 || memfd[1] < 0 || ::ftruncate(memfd[0], 256 << 10) != 0 ||
        ::ftruncate(memfd[1], kSealedBytes) != 0 ||
        ::fcntl(memfd[1], F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0)
        std::abort();
    Deliver(server, MakeCommand(Command::kVersion, Raw(VersionPayload{})));

    Script in(data, size);
    for (int steps = 0; !in.done() && steps < 4096; steps++) {
        switch (in.Take(1) % kOpCount) {
            case kOpMsg: {
                auto b = in.Bytes(in.Take(2));
                if (b.size() < 16) break;
                Message m;
                std::memcpy(&m.hdr, b.data(), 16);
                m.payload.assign(b.begin() + 16, b.end());
                Deliver(server, std::move(m));
                break;
            }
            case kOpMap: {
                uint32_t which = uint32_t(in.Take(1));
                uint64_t file_page = in.Take(1), pages = in.Take(1), iova_page = in.Take(2);
                DmaMapPayload p;
                p.argsz.set(sizeof(p));
                p.flags.set(kDmaMapFlagRead | ((which & 2) ? kDmaMapFlagWrite : 0));
                p.offset.set(file_page * 4096);
                p.addr.set(iova_page * 4096);
                p.size.set(pages * 4096);
                Message m = MakeCommand(Command::kDmaMap, Raw(p));
                m.fds.emplace_back(::fcntl(memfd[which & 1], F_DUPFD_CLOEXEC, 0));
                Deliver(server, std::move(m));
                break;
            }
            case kOpUnmap: {
                uint64_t iova_page = in.Take(2), pages = in.Take(1);
                DmaUnmapPayload p;
                p.argsz.set(sizeof(p));
                p.flags.set(pages == 0 ? kDmaUnmapFlagAll : 0);
                p.addr.set(pages == 0 ? 0 : iova_page * 4096);
                p.size.set(pages * 4096);
                Deliver(server, MakeCommand(Command::kDmaUnmap, Raw(p)));
                break;
            }
            case kOpResize:
                // Shrinks or grows the unsealed memfd under every mapping of it, whatever the
                // controller is doing.
                if (::ftruncate(memfd[0], off_t(in.Take(1) * 4096)) != 0) std::abort();
                break;
            case kOpPoke: {
                int fd = memfd[in.Take(1) & 1];
                uint64_t off = in.Take(4) % kMemfdMaxBytes;
                auto b = in.Bytes(in.Take(2));
                // Past the end of memfd #0 this grows it; memfd #1 refuses (F_SEAL_GROW).
                if (!b.empty()) (void)!::pwrite(fd, b.data(), b.size(), off_t(off));
                break;
            }
            case kOpReg: {
                uint32_t off = uint32_t(in.Take(1) % 16) * 4;
                uint64_t v = in.Take(8);
                bool qword = off == qzns::nvme::reg::kAsq || off == qzns::nvme::reg::kAcq;
                RegionWrite(server, off, v, qword ? 8 : 4);
                break;
            }
            case kOpDoorbell: {
                uint32_t q = uint32_t(in.Take(1));
                uint64_t v = in.Take(2);
                uint32_t idx = 2 * (q & 0x7f) + (q >> 7);
                RegionWrite(server, qzns::nvme::reg::kDoorbellBase + 4ull * idx, v, 4);
                break;
            }
            case kOpSettle: {
                auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
                while (std::chrono::steady_clock::now() < deadline) {
                    auto aers = (*dev)->controller().stats().in_state[size_t(RequestState::kAerPending)];
                    if ((*dev)->stats().inflight <= aers) break;
                    std::this_thread::yield();
                }
                break;
            }
        }
    }
    server.DropClient();  // then ~VfioUserServer, then ~NvmePciDevice waits for what is in flight
    ::close(memfd[0]);
    ::close(memfd[1]);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    uint8_t mode = data[0] % 4;
    data++;
    size--;
    if (mode == 2) {
        FuzzDptr(data, size);
        return 0;
    }
    if (mode == 3) {
        FuzzNvme(data, size);
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
