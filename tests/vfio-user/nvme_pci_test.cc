// The NVMe PCI front end served over vfio-user (the server driven message by message, guest
// memory in a memfd). Most tests shrink that memfd under the controller (a client may
// ftruncate an unsealed memfd or a plain file after DMA_MAP): every access to the lost pages
// fails the command, the completion or the fetch, the server keeps answering, and growing the
// file back brings the controller back. A SIGBUS anywhere kills the test binary.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
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
#include "tests/vfio-user/server-call.h"

namespace qzns::vfu {
namespace {

using testing::CallServer;
using testing::Raw;

constexpr uint64_t kGuest = 0x100000;  // IOVA of memfd page 0
constexpr uint64_t kAsq = 0x0000, kAcq = 0x1000, kIoCq = 0x2000, kIoSq = 0x3000, kPrpList = 0x4000,
                   kData = 0x8000;
constexpr size_t kGuestBytes = 64 << 10;

nvme::Sqe PrpSqe(uint8_t opcode, uint16_t cid, uint64_t prp1, uint64_t prp2 = 0) {
    nvme::Sqe s{};
    s.opcode = opcode;
    s.cid.set(cid);
    s.dptr1.set(prp1);
    s.dptr2.set(prp2);
    return s;
}

class NvmePci : public ::testing::Test {
protected:
    void SetUp() override {
        qcow2::CreateOptions co;
        co.size = 8 << 20;
        co.cluster_size = 65536;
        qcow2::ZonedGeometry g;
        g.profile = qcow2::ZonedProfile::kZns;
        g.zone_size = 1 << 20;
        g.nr_conv_zones = 1;
        co.zoned = g;
        ASSERT_TRUE(qcow2::Create(BorrowFile(file_.get()), co).ok());
        auto img = qcow2::Image::Open(BorrowFile(file_.get()), {.write = true}, nullptr);
        ASSERT_TRUE(img.ok()) << img.status().message();
        auto be = BlockBackend::OpenDriver(std::move(*img));
        ASSERT_TRUE(be.ok());
        nvme::SubsystemConfig cfg;
        cfg.nqn = "nqn.2026-11.io.qzns:shrink";
        cfg.worker_threads = 2;
        cfg.ctrl.transport = nvme::TransportKind::kPci;
        cfg.ctrl.msix_vectors = 4;
        auto s = nvme::Subsystem::Create(cfg);
        ASSERT_TRUE(s.ok());
        subsys_ = *s;
        auto nsids = subsys_->AddBackend(std::shared_ptr<BlockBackend>(std::move(*be)), {});
        ASSERT_TRUE(nsids.ok());
        ASSERT_EQ(nsids->size(), 2u);  // the zoned namespace and the conventional zone's
        conv_nsid_ = (*nsids)[1];
        NvmePciOptions po;
        po.msix_vectors = 4;
        auto dev = NvmePciDevice::Create(subsys_, po);
        ASSERT_TRUE(dev.ok());
        dev_ = std::move(*dev);
        server_ = std::make_unique<VfioUserServer>(dev_.get(), ServerOptions{});
        dev_->Attach(server_->dma(), server_->irq_sink());
        ASSERT_EQ(Call(Command::kVersion, Raw(VersionPayload{})), 0);

        memfd_ = ::memfd_create("guest", MFD_CLOEXEC);  // no seals: the client may shrink it
        ASSERT_GE(memfd_, 0);
        ASSERT_EQ(::ftruncate(memfd_, kGuestBytes), 0);
        DmaMapPayload p;
        p.argsz.set(sizeof(p));
        p.flags.set(kDmaMapFlagRead | kDmaMapFlagWrite);
        p.addr.set(kGuest);
        p.size.set(kGuestBytes);
        ASSERT_EQ(Call(Command::kDmaMap, Raw(p), ::fcntl(memfd_, F_DUPFD_CLOEXEC, 0)), 0);

        Reg(nvme::reg::kAqa, (15u << 16) | 15, 4);
        Reg(nvme::reg::kAsq, kGuest + kAsq, 8);
        Reg(nvme::reg::kAcq, kGuest + kAcq, 8);
        Reg(nvme::reg::kCc, 0x460061, 4);  // EN, CSS 110b, IOSQES 6, IOCQES 4
        ASSERT_EQ(Csts() & (nvme::kCstsRdy | nvme::kCstsCfs), nvme::kCstsRdy);
    }
    void TearDown() override {
        server_.reset();
        dev_.reset();
        if (memfd_ >= 0) ::close(memfd_);
    }

    // Runs one command message; returns the reply's errno (0: success).
    int Call(Command cmd, std::vector<uint8_t> payload, int fd = -1) {
        return CallServer(*server_, cmd, std::move(payload), fd, &last_reply_);
    }
    void Bar0Write(uint64_t off, uint64_t value, uint32_t size) {
        RegionAccessPayload a;
        a.offset.set(off);
        a.region.set(kPciBar0RegionIndex);
        a.count.set(size);
        std::vector<uint8_t> b = Raw(a);
        b.resize(b.size() + size);
        std::memcpy(b.data() + sizeof(a), &value, size);
        ASSERT_EQ(Call(Command::kRegionWrite, b), 0);
    }
    void Reg(uint32_t off, uint64_t value, uint32_t size) { Bar0Write(off, value, size); }
    void SqDoorbell(uint16_t qid, uint32_t tail) { Bar0Write(nvme::reg::kDoorbellBase + 8u * qid, tail, 4); }
    uint32_t Csts() {
        RegionAccessPayload a;
        a.offset.set(nvme::reg::kCsts);
        a.region.set(kPciBar0RegionIndex);
        a.count.set(4);
        EXPECT_EQ(Call(Command::kRegionRead, Raw(a)), 0) << "the server must keep answering";
        uint32_t v = 0;
        if (last_reply_.payload.size() >= sizeof(a) + 4) std::memcpy(&v, last_reply_.payload.data() + sizeof(a), 4);
        return v;
    }
    void Poke(uint64_t off, const void* p, size_t n) {
        ASSERT_EQ(::pwrite(memfd_, p, n, off_t(off)), ssize_t(n));
    }
    // Waits until the device has nothing in flight but AERs.
    void Settle() {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (dev_->stats().inflight >
               dev_->controller().stats().in_state[size_t(nvme::RequestState::kAerPending)]) {
            ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "commands never completed";
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }
    // Submits `s` in admin SQ slot `slot` and rings the doorbell; waits for it to finish.
    void Admin(uint32_t slot, nvme::Sqe s) {
        Poke(kAsq + 64 * slot, &s, sizeof(s));
        SqDoorbell(0, slot + 1);
        Settle();
    }
    void Io(uint32_t slot, nvme::Sqe s) {
        Poke(kIoSq + 64 * slot, &s, sizeof(s));
        SqDoorbell(1, slot + 1);
        Settle();
    }
    // The CQE in entry `i` of the CQ at `cq` (zeros where the file no longer reaches).
    nvme::Cqe CqeAt(uint64_t cq, uint32_t i) {
        nvme::Cqe c{};
        (void)!::pread(memfd_, &c, sizeof(c), off_t(cq + 16 * i));
        return c;
    }
    void Shrink(size_t bytes) { ASSERT_EQ(::ftruncate(memfd_, off_t(bytes)), 0); }

    std::unique_ptr<File> file_ = NewMemFile();
    std::shared_ptr<nvme::Subsystem> subsys_;
    uint32_t conv_nsid_ = 0;
    std::unique_ptr<NvmePciDevice> dev_;
    std::unique_ptr<VfioUserServer> server_;
    int memfd_ = -1;
    OutMessage last_reply_;
};

constexpr uint16_t kPhase = 1;
constexpr uint16_t kDnr = 0x4000;
uint16_t StatusField(uint16_t sc) { return uint16_t(sc << 1); }

TEST_F(NvmePci, AdminQueueMemoryShrunkFailsTheCommandsNotTheServer) {
    auto identify = [](uint16_t cid, uint64_t buf) {
        nvme::Sqe s = PrpSqe(0x06, cid, kGuest + buf);
        s.cdw10.set(1);
        return s;
    };
    Admin(0, identify(1, kData));
    EXPECT_EQ(CqeAt(kAcq, 0).status.get(), kPhase);
    EXPECT_EQ(CqeAt(kAcq, 0).cid.get(), 1);

    // The data buffer (page 8) is gone, the queues are not: Data Transfer Error in the CQ.
    Shrink(4 * 4096);
    Admin(1, identify(2, kData));
    nvme::Cqe c = CqeAt(kAcq, 1);
    EXPECT_EQ(c.cid.get(), 2);
    EXPECT_EQ(c.status.get(), StatusField(dptr_sc::kDataTransferError | kDnr) | kPhase);

    // The admin CQ (page 1) is gone: the completion cannot be posted and is dropped.
    Shrink(4096);
    uint64_t dropped = dev_->stats().completions_dropped;
    Admin(2, identify(3, 0x800));
    EXPECT_EQ(dev_->stats().completions_dropped, dropped + 1);

    // The admin SQ is gone too: the doorbell fetches nothing.
    Shrink(0);
    auto before = dev_->stats();
    SqDoorbell(0, 4);
    Settle();
    EXPECT_EQ(dev_->stats().commands, before.commands);
    EXPECT_EQ(dev_->stats().bad_doorbells, before.bad_doorbells + 1);
    EXPECT_EQ(Csts() & nvme::kCstsRdy, nvme::kCstsRdy);

    // The client grows its memory back: the same doorbell now fetches slot 3, and its
    // completion lands in CQ entry 2 (entry 2's completion was dropped, not posted).
    Shrink(kGuestBytes);
    Admin(3, identify(5, kData));
    c = CqeAt(kAcq, 2);
    EXPECT_EQ(c.cid.get(), 5);
    EXPECT_EQ(c.status.get(), kPhase);
}

TEST_F(NvmePci, IoQueueAndDataMemoryShrunkFailsTheCommandsAndLeavesTheImageAlone) {
    nvme::Sqe cq = PrpSqe(0x05, 1, kGuest + kIoCq);
    cq.cdw10.set((15u << 16) | 1);
    cq.cdw11.set(0x3);  // physically contiguous, interrupts enabled, vector 0
    Admin(0, cq);
    nvme::Sqe sq = PrpSqe(0x01, 2, kGuest + kIoSq);
    sq.cdw10.set((15u << 16) | 1);
    sq.cdw11.set((1u << 16) | 1);
    Admin(1, sq);
    ASSERT_EQ(CqeAt(kAcq, 0).status.get(), kPhase);
    ASSERT_EQ(CqeAt(kAcq, 1).status.get(), kPhase);

    // 12 KiB at LBA 0 of the conventional namespace: PRP1 page 8, list in page 4 -> 9, 10.
    uint64_t list[2] = {kGuest + kData + 0x1000, kGuest + kData + 0x2000};
    Poke(kPrpList, list, sizeof(list));
    std::vector<uint8_t> pattern(3 * 4096, 0x5a);
    Poke(kData, pattern.data(), pattern.size());
    auto rw = [&](uint8_t opcode, uint16_t cid) {
        nvme::Sqe s = PrpSqe(opcode, cid, kGuest + kData, kGuest + kPrpList);
        s.nsid.set(conv_nsid_);
        s.cdw12.set(23);  // 24 blocks of 512 bytes
        return s;
    };
    Io(0, rw(0x01, 10));
    ASSERT_EQ(CqeAt(kIoCq, 0).status.get(), kPhase);

    // Page 10 is gone: the write fails before anything reaches the image.
    Shrink(10 * 4096);
    std::vector<uint8_t> other(2 * 4096, 0xa5);
    Poke(kData, other.data(), other.size());
    Io(1, rw(0x01, 11));
    EXPECT_EQ(CqeAt(kIoCq, 1).status.get(), StatusField(dptr_sc::kDataTransferError | kDnr) | kPhase);
    // So is the read's copy back.
    Io(2, rw(0x02, 12));
    EXPECT_EQ(CqeAt(kIoCq, 2).status.get(), StatusField(dptr_sc::kDataTransferError | kDnr) | kPhase);

    // The PRP list (page 4) is gone: the walk fails.
    Shrink(4 * 4096);
    Io(3, rw(0x02, 13));
    EXPECT_EQ(CqeAt(kIoCq, 3).status.get(), StatusField(dptr_sc::kDataTransferError | kDnr) | kPhase);

    // The I/O SQ (page 3) is gone: nothing is fetched.
    Shrink(3 * 4096);
    uint64_t commands = dev_->stats().commands;
    SqDoorbell(1, 5);
    Settle();
    EXPECT_EQ(dev_->stats().commands, commands);

    // Grown back: what the first write stored is intact (the failed one wrote nothing).
    Shrink(kGuestBytes);
    std::vector<uint8_t> zeros(pattern.size(), 0);
    Poke(kData, zeros.data(), zeros.size());
    Poke(kPrpList, list, sizeof(list));
    Io(4, rw(0x02, 14));
    EXPECT_EQ(CqeAt(kIoCq, 4).status.get(), kPhase);
    std::vector<uint8_t> got(pattern.size());
    ASSERT_EQ(::pread(memfd_, got.data(), got.size(), kData), ssize_t(got.size()));
    EXPECT_EQ(got, pattern);
    EXPECT_EQ(Csts() & (nvme::kCstsRdy | nvme::kCstsCfs), nvme::kCstsRdy);
}

// Linux keeps Asynchronous Event Requests outstanding all the time; an AER holds no guest memory
// (its completion goes through the DMA table like any other), so DMA_UNMAP must not wait for it.
TEST_F(NvmePci, DmaUnmapDoesNotWaitForOutstandingAers) {
    Admin(0, PrpSqe(0x0c, 1, 0));
    ASSERT_EQ(dev_->controller().stats().in_state[size_t(nvme::RequestState::kAerPending)], 1u);
    DmaMapPayload m;
    m.argsz.set(sizeof(m));
    m.flags.set(kDmaMapFlagRead | kDmaMapFlagWrite);
    m.addr.set(0x800000);
    m.size.set(4096);
    ASSERT_EQ(Call(Command::kDmaMap, Raw(m), ::fcntl(memfd_, F_DUPFD_CLOEXEC, 0)), 0);
    DmaUnmapPayload u;
    u.argsz.set(sizeof(u));
    u.addr.set(0x800000);
    u.size.set(4096);
    auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(Call(Command::kDmaUnmap, Raw(u)), 0);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
    // The AER is still there and still completes into the admin CQ (on reset: aborted).
    Reg(nvme::reg::kCc, 0, 4);
    Settle();
    EXPECT_EQ(dev_->stats().inflight, 0u);
}

// A completion raises its interrupt after leaving the device's lock; the client leaving (and the
// server, which owns the interrupt eventfds, going away after it) must wait for that too. The
// fuzzer found the server freed under a worker thread's Trigger.
TEST_F(NvmePci, DetachWaitsForACompletionStillRaisingItsInterrupt) {
    struct BlockingIrq final : IrqSink {
        std::atomic<bool> entered{false}, release{false};
        bool Trigger(uint32_t) override {
            entered = true;
            for (int i = 0; i < 5000 && !release; i++) std::this_thread::sleep_for(std::chrono::milliseconds(1));
            return true;
        }
        uint32_t MsixVectorsEnabled() const override { return 1; }
    } irq;
    dev_->Attach(server_->dma(), &irq);
    nvme::Sqe s = PrpSqe(0x06, 1, kGuest + kData);
    s.cdw10.set(1);
    Poke(kAsq, &s, sizeof(s));
    SqDoorbell(0, 1);
    for (int i = 0; i < 5000 && !irq.entered; i++) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ASSERT_TRUE(irq.entered);
    std::atomic<bool> detached{false};
    std::thread t([&] {
        dev_->Attach(nullptr, nullptr);
        detached = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_FALSE(detached) << "detached while a completion was still in the IrqSink";
    irq.release = true;
    t.join();
    EXPECT_TRUE(detached);
    dev_->Attach(server_->dma(), server_->irq_sink());
}

}  // namespace
}  // namespace qzns::vfu
