// No heap allocation per I/O through the vfio-user NVMe PCI front end: steady-state Read, Write
// and Zone Append at queue depth 8 through the real NvmePciDevice, its DMA table (guest memory
// in a memfd mapped with DMA_MAP), the controller and a zoned qcow2 image (io_uring where the
// kernel has it) allocate nothing. Every operator new in the process is counted while the
// measured I/O runs, except what the test's host side does itself: the host thread is exempt
// except while it writes a doorbell, since the device fetches and submits on that thread. The
// first few allocations print a backtrace, so a failure names the code that allocated.
//
// Two hosts: MMIO doorbells with guest memory the client could shrink (every transfer is
// bounced through guarded copies), and shadow doorbells (the completing thread fetches) with
// sealed memory (zero-copy for one segment, bounced for a scattered PRP list).
#include <execinfo.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <thread>

#include "block/block-backend.h"
#include "block/file.h"
#include "block/qcow2/qcow2.h"
#include "hw/nvme/spec.h"
#include "hw/nvme/subsystem.h"
#include "hw/vfio-user/nvme-pci.h"
#include "hw/vfio-user/server.h"
#include "tests/vfio-user/server-call.h"
#include "tests/alloc-count.h"

namespace qzns::vfu {
namespace {

using testing::CallServer;
using testing::Raw;

constexpr uint64_t kZone = 16 << 20;
constexpr uint32_t kLba = 4096;
constexpr uint32_t kDepth = 8;
constexpr uint32_t kIoEntries = 64, kAdminEntries = 16;
// Guest memory: IOVA kGuest + offset in the memfd.
constexpr uint64_t kGuest = 0x100000;
constexpr uint64_t kAsq = 0x0000, kAcq = 0x1000, kIoCq = 0x2000, kIoSq = 0x3000, kDbs = 0x4000, kEis = 0x5000;
constexpr uint64_t kPrpLists = 0x10000;  // one page per in-flight command
constexpr uint64_t kData = 0x100000;     // 64 KiB per in-flight command
constexpr size_t kGuestBytes = 4 << 20;

enum class Doorbells { kMmio, kShadow };

class VfioUserAllocationFree : public ::testing::Test {
protected:
    void SetUp() override {
        void* warm[2];
        (void)backtrace(warm, 2);
        char path[] = "/tmp/qzns-vfu-alloc-XXXXXX";
        int fd = mkstemp(path);
        ASSERT_GE(fd, 0);
        close(fd);
        path_ = path;
        {
            auto f = OpenPosixFile(path_, {.write = true, .create = true, .direct = false, .lock = false});
            ASSERT_TRUE(f.ok()) << f.status().message();
            qcow2::CreateOptions co;
            co.size = 16 * kZone;
            qcow2::ZonedGeometry g;
            g.profile = qcow2::ZonedProfile::kZns;
            g.zone_size = g.zone_capacity = kZone;
            co.zoned = g;
            Status st = qcow2::Create(std::move(*f), co);
            ASSERT_TRUE(st.ok()) << st.message();
        }
        BlockBackendOptions bo;
        bo.filename = path_;
        auto be = BlockBackend::Open(bo);
        ASSERT_TRUE(be.ok()) << be.status().message();
        be_ = std::shared_ptr<BlockBackend>(std::move(*be));
        nvme::SubsystemConfig cfg;
        cfg.nqn = "nqn.2026-12.io.qzns:vfu-alloc";
        cfg.ctrl.transport = nvme::TransportKind::kPci;
        cfg.ctrl.msix_vectors = 4;
        cfg.ctrl.max_io_queues = 4;
        auto s = nvme::Subsystem::Create(cfg);
        ASSERT_TRUE(s.ok()) << s.status().message();
        subsys_ = *s;
        nvme::NamespaceOptions nopts;
        nopts.lba_size = kLba;
        auto ids = subsys_->AddBackend(be_, nopts);
        ASSERT_TRUE(ids.ok()) << ids.status().message();
        nsid_ = ids->front();
        NvmePciOptions po;
        po.msix_vectors = 4;
        po.max_queue_pairs = 5;
        auto dev = NvmePciDevice::Create(subsys_, po);
        ASSERT_TRUE(dev.ok()) << dev.status().message();
        dev_ = std::move(*dev);
        server_ = std::make_unique<VfioUserServer>(dev_.get(), ServerOptions{});
        dev_->Attach(server_->dma(), server_->irq_sink());
        ASSERT_EQ(Call(Command::kVersion, Raw(VersionPayload{})), 0);
    }
    void TearDown() override {
        g_counting = false;
        t_exempt = false;
        server_.reset();
        dev_.reset();
        subsys_.reset();
        if (be_) {
            EXPECT_TRUE(be_->Close().ok());
        }
        be_.reset();
        if (mem_ != nullptr) ::munmap(mem_, kGuestBytes);
        if (memfd_ >= 0) ::close(memfd_);
        if (!path_.empty()) unlink(path_.c_str());
    }

    int Call(Command cmd, std::vector<uint8_t> payload, int fd = -1) {
        return CallServer(*server_, cmd, std::move(payload), fd);
    }

    // Guest memory in a memfd the client maps with DMA_MAP; `sealed` (F_SEAL_SHRINK, as QEMU's
    // memory-backend-memfd) lets the server touch it directly.
    void MapGuest(bool sealed) {
        memfd_ = ::memfd_create("guest", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        ASSERT_GE(memfd_, 0);
        ASSERT_EQ(::ftruncate(memfd_, kGuestBytes), 0);
        if (sealed) {
            ASSERT_EQ(::fcntl(memfd_, F_ADD_SEALS, F_SEAL_SHRINK), 0);
        }
        void* p = ::mmap(nullptr, kGuestBytes, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_, 0);
        ASSERT_NE(p, MAP_FAILED);
        mem_ = static_cast<uint8_t*>(p);
        DmaMapPayload m;
        m.argsz.set(sizeof(m));
        m.flags.set(kDmaMapFlagRead | kDmaMapFlagWrite);
        m.addr.set(kGuest);
        m.size.set(kGuestBytes);
        ASSERT_EQ(Call(Command::kDmaMap, Raw(m), ::fcntl(memfd_, F_DUPFD_CLOEXEC, 0)), 0);
    }

    // Device register and doorbell writes: the device fetches and submits on this thread, so
    // they are counted.
    void Reg(uint32_t off, uint64_t v, uint32_t size) {
        t_exempt = false;
        Status st = dev_->RegionWrite(kPciBar0RegionIndex, off, {reinterpret_cast<const uint8_t*>(&v), size});
        t_exempt = true;
        ASSERT_TRUE(st.ok()) << st.message();
    }
    uint32_t ReadReg32(uint32_t off) {
        uint32_t v = 0;
        EXPECT_TRUE(dev_->RegionRead(kPciBar0RegionIndex, off, {reinterpret_cast<uint8_t*>(&v), 4}).ok());
        return v;
    }
    uint32_t Load32(uint64_t off) { return __atomic_load_n(reinterpret_cast<uint32_t*>(mem_ + off), __ATOMIC_ACQUIRE); }
    void Store32(uint64_t off, uint32_t v) { __atomic_store_n(reinterpret_cast<uint32_t*>(mem_ + off), v, __ATOMIC_RELEASE); }
    // The status field of CQ entry `i` (phase in bit 0).
    uint16_t CqStatus(uint64_t cq, uint32_t i) {
        return __atomic_load_n(reinterpret_cast<uint16_t*>(mem_ + cq + 16ull * i + 14), __ATOMIC_ACQUIRE);
    }
    uint32_t CqDw0(uint64_t cq, uint32_t i) { return Load32(cq + 16ull * i); }

    void Enable() {
        Reg(nvme::reg::kAqa, (kAdminEntries - 1) << 16 | (kAdminEntries - 1), 4);
        Reg(nvme::reg::kAsq, kGuest + kAsq, 8);
        Reg(nvme::reg::kAcq, kGuest + kAcq, 8);
        Reg(nvme::reg::kCc, (6u << 16) | (4u << 20) | (6u << 4) | 1, 4);  // IOSQES, IOCQES, CSS 110b, EN
        for (int i = 0; i < 2000 && (ReadReg32(nvme::reg::kCsts) & 1) == 0; i++)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        ASSERT_EQ(ReadReg32(nvme::reg::kCsts) & 3, 1u) << "CSTS.RDY without CFS";
    }

    uint16_t Admin(nvme::Sqe s) {
        s.cid.set(admin_cid_++);
        std::memcpy(mem_ + kAsq + 64ull * admin_tail_, &s, sizeof(s));
        admin_tail_ = (admin_tail_ + 1) % kAdminEntries;
        Reg(nvme::reg::kDoorbellBase, admin_tail_, 4);
        for (int i = 0; i < 5000; i++) {
            uint16_t st = CqStatus(kAcq, admin_head_);
            if ((st & 1) == admin_phase_) {
                if (++admin_head_ == kAdminEntries) admin_head_ = 0, admin_phase_ ^= 1;
                Reg(nvme::reg::kDoorbellBase + 4, admin_head_, 4);
                return uint16_t(st >> 1);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        ADD_FAILURE() << "admin command timed out";
        return 0xffff;
    }

    void StartHost(Doorbells db, bool sealed) {
        t_exempt = true;
        doorbells_ = db;
        MapGuest(sealed);
        Enable();
        if (db == Doorbells::kShadow) {
            nvme::Sqe s{};
            s.opcode = 0x7c;
            s.dptr1.set(kGuest + kDbs);
            s.dptr2.set(kGuest + kEis);
            ASSERT_EQ(Admin(s), 0) << "Doorbell Buffer Config";
        }
        nvme::Sqe nq{};
        nq.opcode = 0x09;  // Set Features, Number of Queues
        nq.cdw10.set(0x07);
        nq.cdw11.set(0x00030003);
        ASSERT_EQ(Admin(nq), 0);
        nvme::Sqe cq{};
        cq.opcode = 0x05;
        cq.dptr1.set(kGuest + kIoCq);
        cq.cdw10.set((kIoEntries - 1) << 16 | 1);
        cq.cdw11.set(0x3);  // physically contiguous, interrupts enabled, vector 0
        ASSERT_EQ(Admin(cq), 0);
        nvme::Sqe sq{};
        sq.opcode = 0x01;
        sq.dptr1.set(kGuest + kIoSq);
        sq.cdw10.set((kIoEntries - 1) << 16 | 1);
        sq.cdw11.set(1u << 16 | 1);
        ASSERT_EQ(Admin(sq), 0);
    }

    // Fills in the data pointer for `bytes` at in-flight slot `slot`: one page, or (when
    // `scattered`) every other page of the slot's data area through a PRP list.
    void Dptr(nvme::Sqe& s, uint32_t slot, uint32_t bytes, bool scattered) {
        const uint64_t data = kGuest + kData + slot * 0x10000ull;
        s.dptr1.set(data);
        if (bytes <= 4096) return;
        uint64_t list = kPrpLists + slot * 0x1000ull;
        for (uint32_t i = 1; i < bytes / 4096; i++) {
            uint64_t e = data + (scattered ? 2 * i : i) * 4096ull;
            std::memcpy(mem_ + list + 8 * (i - 1), &e, 8);
        }
        if (bytes == 8192) s.dptr2.set(*reinterpret_cast<uint64_t*>(mem_ + list));
        else s.dptr2.set(kGuest + list);
    }

    // Runs `n` commands made by `make(i, slot)` with up to kDepth in flight: as completions
    // come back the freed slots are refilled, all refills announced with one tail update (so
    // with shadow doorbells new commands arrive while the queue is busy, without MMIO). A slot
    // (its data buffer, PRP list page and zone for writes) has one command at a time; the CID's
    // low bits name it. Checks every status and collects dw0.
    void RunIo(uint32_t n, const std::function<nvme::Sqe(uint32_t i, uint32_t slot)>& make,
               std::vector<uint32_t>* dw0 = nullptr) {
        static_assert(kDepth == 8);
        std::vector<uint32_t> free_slots;
        for (uint32_t k = kDepth; k-- > 0;) free_slots.push_back(k);
        uint32_t submitted = 0, done = 0;
        while (done < n) {
            const uint32_t old_tail = io_tail_;
            bool queued = false;
            while (submitted < n && !free_slots.empty()) {
                uint32_t slot = free_slots.back();
                free_slots.pop_back();
                nvme::Sqe s = make(submitted++, slot);
                s.cid.set(uint16_t((io_seq_++ << 3) | slot));
                std::memcpy(mem_ + kIoSq + 64ull * io_tail_, &s, sizeof(s));
                io_tail_ = (io_tail_ + 1) % kIoEntries;
                queued = true;
            }
            if (queued) RingSq(old_tail);
            uint32_t reaped = 0;
            for (int spin = 0; reaped == 0; spin++) {
                for (;;) {
                    uint16_t st = CqStatus(kIoCq, io_head_);
                    if ((st & 1) != io_phase_) break;
                    uint16_t cid = __atomic_load_n(reinterpret_cast<uint16_t*>(mem_ + kIoCq + 16ull * io_head_ + 12),
                                                   __ATOMIC_RELAXED);
                    ASSERT_EQ(st >> 1, 0) << "command cid " << cid;
                    if (dw0) dw0->push_back(CqDw0(kIoCq, io_head_));
                    free_slots.push_back(cid & 7);
                    if (++io_head_ == kIoEntries) io_head_ = 0, io_phase_ ^= 1;
                    reaped++;
                }
                ASSERT_LT(spin, 5'000'000) << "no completion with " << submitted - done << " in flight";
                if (spin > 1000) std::this_thread::yield();
            }
            RingCq();
            done += reaped;
        }
    }
    void RingSq(uint32_t old_tail) {
        if (doorbells_ == Doorbells::kMmio) return Reg(nvme::reg::kDoorbellBase + 8, io_tail_, 4);
        Store32(kDbs + 8, io_tail_);
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if (nvme::ShadowDoorbellNeedsMmio(uint16_t(Load32(kEis + 8)), uint16_t(io_tail_), uint16_t(old_tail)))
            Reg(nvme::reg::kDoorbellBase + 8, io_tail_, 4);
    }
    void RingCq() {
        if (doorbells_ == Doorbells::kMmio) return Reg(nvme::reg::kDoorbellBase + 12, io_head_, 4);
        uint32_t old = Load32(kDbs + 12);
        Store32(kDbs + 12, io_head_);
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if (nvme::ShadowDoorbellNeedsMmio(uint16_t(Load32(kEis + 12)), uint16_t(io_head_), uint16_t(old)))
            Reg(nvme::reg::kDoorbellBase + 12, io_head_, 4);
    }

    nvme::Sqe Rw(uint8_t opcode, uint64_t slba, uint32_t bytes, uint32_t slot, bool scattered = false) {
        nvme::Sqe s{};
        s.opcode = opcode;
        s.nsid.set(nsid_);
        s.cdw10.set(uint32_t(slba));
        s.cdw11.set(uint32_t(slba >> 32));
        s.cdw12.set(bytes / kLba - 1);
        Dptr(s, slot, bytes, scattered);
        return s;
    }

    // Writes (kDepth zones written side by side), reads of what was written and appends, each
    // kind `warm` times and then `measured` times with every allocation counted. Returns the
    // allocations per kind. `scattered_bytes` > 0: the reads of the last slot are that many
    // bytes through a scattered PRP list.
    struct Counts {
        uint64_t writes = 0, reads = 0, appends = 0;
        uint64_t scattered = 0;  // reads issued through a scattered PRP list
    };
    Counts Measure(uint32_t warm, uint32_t measured, uint32_t scattered_bytes) {
        const uint64_t zone_lbas = kZone / kLba;
        std::vector<uint64_t> wp(kDepth, 0);
        for (uint32_t z = 0; z < kDepth; z++) wp[z] = z * zone_lbas;
        auto write = [&](uint32_t i, uint32_t slot) {
            uint32_t z = slot;  // one write in flight per zone
            uint32_t v = 0x10000 + i;
            std::memcpy(mem_ + kData + slot * 0x10000ull, &v, 4);
            return Rw(0x01, wp[z]++, kLba, slot);
        };
        Counts c;
        auto read = [&](uint32_t i, uint32_t slot) {
            if (scattered_bytes && slot == kDepth - 1) {  // which slot a read gets depends on timing
                c.scattered++;
                return Rw(0x02, slot * zone_lbas, scattered_bytes, slot, /*scattered=*/true);
            }
            return Rw(0x02, slot * zone_lbas + (i / kDepth) % 16, kLba, slot);
        };
        const uint64_t append_zone = kDepth * zone_lbas;
        auto append = [&](uint32_t, uint32_t slot) {
            nvme::Sqe s = Rw(0x7d, append_zone, kLba, slot);
            return s;
        };
        // Warm-up first: zones get their clusters, caches fill, requests get their buffers.
        auto phase = [&](uint64_t& count, auto make) {
            RunIo(warm, make);
            g_allocs = 0;
            g_counting = true;
            RunIo(measured, make);
            g_counting = false;
            count = g_allocs.load();
        };
        phase(c.writes, write);
        phase(c.reads, read);
        RunIo(warm, append);
        std::vector<uint32_t> lbas;
        g_allocs = 0;
        g_counting = true;
        RunIo(measured, append, &lbas);
        g_counting = false;
        c.appends = g_allocs.load();
        // What the writes stored is there (a read of zone 0's first block), and appends got
        // consecutive LBAs.
        std::memset(mem_ + kData, 0, 4);
        RunIo(1, [&](uint32_t, uint32_t slot) { return Rw(0x02, 0, kLba, slot); });
        uint32_t v;
        std::memcpy(&v, mem_ + kData, 4);
        EXPECT_EQ(v, 0x10000u) << "zone 0 LBA 0 holds the first write";
        std::sort(lbas.begin(), lbas.end());
        for (size_t i = 0; i < lbas.size(); i++) EXPECT_EQ(lbas[i], append_zone + warm + i) << "append LBA";
        return c;
    }

    void Report(const char* what, Counts c, uint32_t measured) {
        printf("%s: heap allocations in %u steady-state commands each: writes %llu, reads %llu, appends %llu\n",
               what, measured, (unsigned long long)c.writes, (unsigned long long)c.reads,
               (unsigned long long)c.appends);
        EXPECT_EQ(c.writes, 0u) << "Write (backtraces above)";
        EXPECT_EQ(c.reads, 0u) << "Read (backtraces above)";
        EXPECT_EQ(c.appends, 0u) << "Zone Append (backtraces above)";
    }

    std::string path_;
    std::shared_ptr<BlockBackend> be_;
    std::shared_ptr<nvme::Subsystem> subsys_;
    std::unique_ptr<NvmePciDevice> dev_;
    std::unique_ptr<VfioUserServer> server_;
    uint32_t nsid_ = 0;
    int memfd_ = -1;
    uint8_t* mem_ = nullptr;
    Doorbells doorbells_ = Doorbells::kMmio;
    uint32_t admin_tail_ = 0, admin_head_ = 0;
    uint16_t admin_phase_ = 1, admin_cid_ = 1;
    uint32_t io_tail_ = 0, io_head_ = 0;
    uint16_t io_phase_ = 1;
    uint32_t io_seq_ = 0;
};

TEST_F(VfioUserAllocationFree, MmioDoorbellsGuardedMemoryBounceEveryTransfer) {
    StartHost(Doorbells::kMmio, /*sealed=*/false);
    NvmePciStats before = dev_->stats();
    Counts c = Measure(64, 1000, 0);
    NvmePciStats after = dev_->stats();
    EXPECT_EQ(after.zero_copy, before.zero_copy) << "memory the client can shrink is never mapped through";
    EXPECT_GE(after.bounced - before.bounced, 3000u);
    Report("MMIO doorbells, guarded memory", c, 1000);
}

TEST_F(VfioUserAllocationFree, ShadowDoorbellsSealedMemoryZeroCopyAndScatteredPrpLists) {
    StartHost(Doorbells::kShadow, /*sealed=*/true);
    NvmePciStats before = dev_->stats();
    Counts c = Measure(64, 1000, 64 << 10);
    NvmePciStats after = dev_->stats();
    EXPECT_GT(after.zero_copy - before.zero_copy, 2000u);
    EXPECT_GT(c.scattered, 0u);
    EXPECT_GE(after.bounced - before.bounced, c.scattered) << "the scattered reads bounce";
    EXPECT_GT(after.eventidx_writes, before.eventidx_writes) << "the shadow doorbells were not used";
    EXPECT_EQ(after.cq_doorbells, before.cq_doorbells) << "a CQ head rang despite its EventIdx";
    Report("shadow doorbells, sealed memory", c, 1000);
}

}  // namespace
}  // namespace qzns::vfu
