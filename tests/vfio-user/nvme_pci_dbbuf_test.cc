// Shadow doorbells (Doorbell Buffer Config, 7Ch) of the vfio-user PCI NVMe controller, driven
// the way Linux 6.1's nvme-pci driver drives them: the SQ tail goes to the shadow page first,
// then (full barrier) the EventIdx page decides whether the MMIO doorbell is rung
// (nvme_dbbuf_update_and_check_event). The device runs without a socket: the test is the
// client, with guest memory in a vector and registers/doorbells written through RegionWrite.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include "hw/vfio-user/nvme-pci.h"
#include "tests/qtest/nvme-qtest.h"

namespace qzns::vfu {
namespace {

using nvme::qtest::Cmd;
using nvme::qtest::MemImage;
using nvme::qtest::ZonedImageSpec;

// Guest memory [0, size): every access under one mutex, so the test's stores and the
// device's loads are ordered and race-free.
class GuestMemory : public DmaSpace {
public:
    explicit GuestMemory(size_t size) : mem_(size, 0) {}
    Status Read(uint64_t iova, void* buf, size_t len) override {
        std::lock_guard lk(mu_);
        if (iova > mem_.size() || len > mem_.size() - iova) return Status::Error(EFAULT, "outside guest memory");
        std::memcpy(buf, mem_.data() + iova, len);
        return Status::Ok();
    }
    Status Write(uint64_t iova, const void* buf, size_t len) override {
        if (before_write) before_write(iova);
        std::lock_guard lk(mu_);
        if (iova > mem_.size() || len > mem_.size() - iova) return Status::Error(EFAULT, "outside guest memory");
        std::memcpy(mem_.data() + iova, buf, len);
        return Status::Ok();
    }
    uint8_t* Translate(uint64_t, size_t, bool) override { return nullptr; }
    uint32_t Load32(uint64_t at) {
        uint32_t v;
        EXPECT_TRUE(Read(at, &v, 4).ok());
        return v;
    }
    void Store32(uint64_t at, uint32_t v) { EXPECT_TRUE(Write(at, &v, 4).ok()); }
    // Runs before each write lands (set it while no I/O runs): lets a test act in the window
    // between the device's decision and its store.
    std::function<void(uint64_t iova)> before_write;

private:
    std::mutex mu_;
    std::vector<uint8_t> mem_;
};

class CountingIrq : public IrqSink {
public:
    bool Trigger(uint32_t) override {
        count++;
        return true;
    }
    uint32_t MsixVectorsEnabled() const override { return 16; }
    std::atomic<uint64_t> count{0};
};

// Guest physical layout.
constexpr uint64_t kAsq = 0x10000, kAcq = 0x20000;
constexpr uint64_t kDbs = 0x30000, kEis = 0x31000;
constexpr uint64_t kIoCq = 0x40000, kIoSq = 0x50000;
constexpr uint64_t kData = 0x100000;
constexpr uint32_t kAdminEntries = 32, kIoEntries = 64;
constexpr uint64_t kGuestSize = 4 << 20;

class Dbbuf : public ::testing::Test {
protected:
    void SetUp() override {
        image_ = std::make_unique<MemImage>(ZonedImageSpec{}, false, /*faults=*/true);
        // Writes wait while the gate is closed: a command in flight as long as the test wants.
        image_->fault()->SetHook([this](OpKind kind, uint64_t, uint64_t) {
            if (kind == OpKind::kWrite) {
                if (int us = write_delay_us_.load()) {
                    thread_local std::mt19937 r(7);
                    std::this_thread::sleep_for(std::chrono::microseconds(r() % us));
                }
                std::unique_lock lk(gate_mu_);
                writes_seen_++;
                gate_cv_.notify_all();
                gate_cv_.wait(lk, [&] { return gate_open_; });
            }
            return Status::Ok();
        });
        be_ = image_->Open();
        ASSERT_TRUE(be_);
        nvme::SubsystemConfig sc;
        sc.nqn = "nqn.2026-11.io.qzns:dbbuf-test";
        sc.ctrl.transport = nvme::TransportKind::kPci;
        sc.ctrl.msix_vectors = 16;
        sc.ctrl.max_io_queues = 4;
        auto s = nvme::Subsystem::Create(sc);
        ASSERT_TRUE(s.ok()) << s.status().message();
        subsys_ = *s;
        auto ids = subsys_->AddBackend(be_, {});
        ASSERT_TRUE(ids.ok());
        ASSERT_EQ(ids->size(), 2u) << "a zoned namespace and one for the conventional zones";
        nsid_ = ids->at(1);  // conventional: writes land anywhere
        NvmePciOptions po;
        po.max_queue_pairs = 5;
        auto d = NvmePciDevice::Create(subsys_, po);
        ASSERT_TRUE(d.ok()) << d.status().message();
        dev_ = std::move(*d);
        dev_->Attach(&mem_, &irq_);
        Enable();
    }
    void TearDown() override {
        OpenGate();
        dev_.reset();
        subsys_.reset();
        if (be_) {
            EXPECT_TRUE(be_->Close().ok());
        }
    }

    void Reg32(uint32_t off, uint32_t v) { ASSERT_TRUE(dev_->RegionWrite(0, off, {(const uint8_t*)&v, 4}).ok()); }
    void Reg64(uint32_t off, uint64_t v) { ASSERT_TRUE(dev_->RegionWrite(0, off, {(const uint8_t*)&v, 8}).ok()); }
    uint32_t ReadReg32(uint32_t off) {
        uint32_t v = 0;
        EXPECT_TRUE(dev_->RegionRead(0, off, {(uint8_t*)&v, 4}).ok());
        return v;
    }
    void MmioSqTail(uint16_t qid, uint32_t v) { Reg32(0x1000 + 8 * qid, v); }
    void MmioCqHead(uint16_t qid, uint32_t v) { Reg32(0x1000 + 8 * qid + 4, v); }

    void Enable() {
        admin_tail_ = admin_head_ = 0;
        admin_phase_ = 1;
        Reg32(0x24, (kAdminEntries - 1) << 16 | (kAdminEntries - 1));
        Reg64(0x28, kAsq);
        Reg64(0x30, kAcq);
        Reg32(0x14, (6u << 16) | (4u << 20) | (6u << 4) | 1);
        for (int i = 0; i < 500 && (ReadReg32(0x1c) & 1) == 0; i++)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        ASSERT_EQ(ReadReg32(0x1c) & 1, 1u) << "CSTS.RDY";
    }
    void Disable() {
        Reg32(0x14, 0);
        for (int i = 0; i < 500 && (ReadReg32(0x1c) & 1) != 0; i++)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }

    // Runs an admin command (MMIO doorbells, as Linux does for qid 0); returns the status field.
    uint16_t Admin(Cmd c) {
        c.cid(admin_cid_++);
        EXPECT_TRUE(mem_.Write(kAsq + 64ull * admin_tail_, c.s.b, 64).ok());
        admin_tail_ = (admin_tail_ + 1) % kAdminEntries;
        MmioSqTail(0, admin_tail_);
        uint8_t cqe[16];
        for (int i = 0; i < 5000; i++) {
            EXPECT_TRUE(mem_.Read(kAcq + 16ull * admin_head_, cqe, 16).ok());
            if ((cqe[14] & 1) == admin_phase_) {
                if (++admin_head_ == kAdminEntries) admin_head_ = 0, admin_phase_ ^= 1;
                MmioCqHead(0, admin_head_);
                return uint16_t((cqe[14] | cqe[15] << 8) >> 1);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        ADD_FAILURE() << "admin command timed out";
        return 0xffff;
    }

    uint16_t ConfigDbbuf(uint64_t dbs = kDbs, uint64_t eis = kEis) {
        return Admin(Cmd(0x7c).u64(24, dbs).u64(32, eis));
    }
    void CreateIoQueues() {
        ASSERT_EQ(Admin(nvme::qtest::SetFeatures(0x07, 0x00030003)), 0);
        ASSERT_EQ(Admin(Cmd(0x05).u64(24, kIoCq).cdw(10, 1 | (kIoEntries - 1) << 16).cdw(11, 1 | 2 | 1u << 16)), 0);
        ASSERT_EQ(Admin(Cmd(0x01).u64(24, kIoSq).cdw(10, 1 | (kIoEntries - 1) << 16).cdw(11, 1 | 1u << 16)), 0);
        io_tail_ = io_head_ = 0;
        io_phase_ = 1;
    }

    // Puts an I/O command in SQ 1 and moves the tail as Linux does with shadow doorbells:
    // shadow store, full barrier, EventIdx load, MMIO only when the EventIdx says so. Returns
    // whether it rang. `ring` = false: never ring (a host that only writes the shadow).
    bool SubmitIo(Cmd c, bool ring = true) {
        c.cid(io_cid_++);
        EXPECT_TRUE(mem_.Write(kIoSq + 64ull * io_tail_, c.s.b, 64).ok());
        uint32_t old = io_tail_;
        io_tail_ = (io_tail_ + 1) % kIoEntries;
        mem_.Store32(kDbs + 8, io_tail_);
        std::atomic_thread_fence(std::memory_order_seq_cst);
        bool need = nvme::ShadowDoorbellNeedsMmio(uint16_t(mem_.Load32(kEis + 8)), uint16_t(io_tail_), uint16_t(old));
        if (need && ring) MmioSqTail(1, io_tail_);
        return need;
    }
    Cmd WriteCmd(uint64_t lba) { return nvme::qtest::Rw(0x01, nsid_, lba, 1).u64(24, kData); }
    Cmd ReadCmd(uint64_t lba) { return nvme::qtest::Rw(0x02, nsid_, lba, 1).u64(24, kData + 0x1000); }

    // Completions posted to CQ 1 so far that the test has not consumed; consumes them and
    // moves the shadow CQ head (and rings when the EventIdx says so). Returns statuses.
    std::vector<uint16_t> ReapIo() {
        std::vector<uint16_t> out;
        uint8_t cqe[16];
        for (;;) {
            EXPECT_TRUE(mem_.Read(kIoCq + 16ull * io_head_, cqe, 16).ok());
            if ((cqe[14] & 1) != io_phase_) break;
            out.push_back(uint16_t((cqe[14] | cqe[15] << 8) >> 1));
            if (++io_head_ == kIoEntries) io_head_ = 0, io_phase_ ^= 1;
        }
        if (!out.empty()) {
            uint32_t old = mem_.Load32(kDbs + 12);
            mem_.Store32(kDbs + 12, io_head_);
            std::atomic_thread_fence(std::memory_order_seq_cst);
            if (nvme::ShadowDoorbellNeedsMmio(uint16_t(mem_.Load32(kEis + 12)), uint16_t(io_head_), uint16_t(old))) {
                cq_rings_++;
                MmioCqHead(1, io_head_);
            }
        }
        return out;
    }
    // Waits until `n` I/O completions arrived (or the timeout); returns their statuses.
    std::vector<uint16_t> WaitIo(size_t n, int timeout_ms = 5000) {
        std::vector<uint16_t> all;
        for (int i = 0; i < timeout_ms && all.size() < n; i++) {
            auto got = ReapIo();
            all.insert(all.end(), got.begin(), got.end());
            if (all.size() < n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        return all;
    }

    void CloseGate() {
        std::lock_guard lk(gate_mu_);
        gate_open_ = false;
    }
    void OpenGate() {
        std::lock_guard lk(gate_mu_);
        gate_open_ = true;
        gate_cv_.notify_all();
    }
    // Waits until a write reached the (closed) gate: a command is in flight.
    bool WaitWriteAtGate(int before) {
        std::unique_lock lk(gate_mu_);
        return gate_cv_.wait_for(lk, std::chrono::seconds(5), [&] { return writes_seen_ > before; });
    }
    int writes_seen() {
        std::lock_guard lk(gate_mu_);
        return writes_seen_;
    }

    GuestMemory mem_{kGuestSize};
    CountingIrq irq_;
    std::unique_ptr<MemImage> image_;
    std::shared_ptr<BlockBackend> be_;
    std::shared_ptr<nvme::Subsystem> subsys_;
    std::unique_ptr<NvmePciDevice> dev_;
    uint32_t admin_tail_ = 0, admin_head_ = 0;
    uint8_t admin_phase_ = 1;
    uint16_t admin_cid_ = 1;
    uint32_t io_tail_ = 0, io_head_ = 0;
    uint8_t io_phase_ = 1;
    uint16_t io_cid_ = 1;
    int cq_rings_ = 0;
    uint32_t nsid_ = 0;

    std::mutex gate_mu_;
    std::condition_variable gate_cv_;
    bool gate_open_ = true;
    int writes_seen_ = 0;
    std::atomic<int> write_delay_us_{0};
};

TEST_F(Dbbuf, IdentifyAdvertisesDoorbellBufferConfig) {
    // Identify Controller into guest memory at kData; OACS is bytes 256-257.
    ASSERT_EQ(Admin(nvme::qtest::Identify(1).u64(24, kData).u64(32, 0)), 0);
    uint8_t oacs[2];
    ASSERT_TRUE(mem_.Read(kData + 256, oacs, 2).ok());
    EXPECT_TRUE(oacs[1] & 1) << "OACS bit 8: Doorbell Buffer Config supported";
    EXPECT_EQ(ConfigDbbuf(), 0);
    EXPECT_TRUE(dev_->stats().dbbuf_active);
}

TEST_F(Dbbuf, CommandsQueuedBehindAHeldWriteRunWithoutWaitingForIt) {
    ASSERT_EQ(ConfigDbbuf(), 0);
    CreateIoQueues();
    CloseGate();
    int w = writes_seen();
    EXPECT_TRUE(SubmitIo(WriteCmd(0))) << "an idle queue's EventIdx asks for a ring";
    ASSERT_TRUE(WaitWriteAtGate(w)) << "the first write never reached storage";
    // The write is held in storage as long as the test likes. EventIdx must say how far the
    // controller got, so the host rings for each read queued behind the write, and each read
    // completes while the write is still held.
    for (uint64_t lba : {8, 16}) {
        EXPECT_TRUE(SubmitIo(ReadCmd(lba))) << "EventIdx left behind: the host will not ring";
        auto st = WaitIo(1);
        ASSERT_EQ(st.size(), 1u) << "a read waited for a write held in storage";
        EXPECT_EQ(st[0], 0);
    }
    OpenGate();
    auto st = WaitIo(1);
    ASSERT_EQ(st.size(), 1u);
    EXPECT_EQ(st[0], 0);
    EXPECT_EQ(mem_.Load32(kEis + 8), io_tail_) << "EventIdx is the tail consumed";
}

TEST_F(Dbbuf, IdleQueueRunsAShadowTailOnlyAfterTheDoorbell) {
    ASSERT_EQ(ConfigDbbuf(), 0);
    CreateIoQueues();
    // The EventIdx says ring; this host does not (yet): an idle controller does not poll.
    EXPECT_TRUE(SubmitIo(ReadCmd(0), /*ring=*/false));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_TRUE(ReapIo().empty()) << "an idle controller must not pick up shadow tails by itself";
    MmioSqTail(1, io_tail_);
    auto st = WaitIo(1);
    ASSERT_EQ(st.size(), 1u);
    EXPECT_EQ(st[0], 0);
}

// The race EventIdx exists for: the controller read the shadow tail, found nothing new and
// is about to publish EventIdx; in that window the host stores a new shadow tail and loads the
// old EventIdx, which says "no ring". The controller's load after its store must see it.
TEST_F(Dbbuf, ShadowUpdateJustBeforeEventIdxIsPublishedIsNotLost) {
    ASSERT_EQ(ConfigDbbuf(), 0);
    CreateIoQueues();
    std::atomic<int> raced{0};
    std::atomic<bool> armed{true};
    mem_.before_write = [&](uint64_t iova) {
        if (iova != kEis + 8 || !armed.exchange(false)) return;
        // The host, concurrently: a second command, shadow only, since EventIdx is still old.
        raced = SubmitIo(ReadCmd(8), /*ring=*/false) ? 2 : 1;
    };
    EXPECT_TRUE(SubmitIo(ReadCmd(0)));
    auto st = WaitIo(2);
    mem_.before_write = nullptr;
    ASSERT_EQ(raced.load(), 1) << "the window was not hit (or the host was told to ring)";
    ASSERT_EQ(st.size(), 2u) << "the command written while EventIdx was being published was lost";
}

TEST_F(Dbbuf, CqHeadUpdatesDoNotRing) {
    ASSERT_EQ(ConfigDbbuf(), 0);
    CreateIoQueues();
    // More completions than the CQ holds, a few at a time: the CQ EventIdx stays behind the
    // head, so the host never rings for CQ heads, and the controller still sees the space.
    for (int round = 0; round < 40; round++) {
        for (int i = 0; i < 4; i++) SubmitIo(ReadCmd(i));
        auto st = WaitIo(4);
        ASSERT_EQ(st.size(), 4u) << "round " << round;
    }
    EXPECT_EQ(cq_rings_, 0);
    EXPECT_EQ(dev_->stats().cq_overflow, 0u);
}

TEST_F(Dbbuf, ManyCommandsFromARacingHostAreNeverLost) {
    ASSERT_EQ(ConfigDbbuf(), 0);
    CreateIoQueues();
    // Up to 16 reads and writes in flight (writes take 0-100 us at the medium), submitted in
    // random bursts while completions come back: the races between the host's shadow update
    // and the controller going idle get tried.
    write_delay_us_ = 100;
    std::mt19937 rng(12);
    size_t submitted = 0, done = 0;
    const size_t total = 3000;
    while (done < total) {
        for (size_t burst = rng() % 4 + 1; burst > 0 && submitted < total && submitted - done < 16; burst--) {
            SubmitIo(rng() % 2 ? ReadCmd(rng() % 64) : WriteCmd(rng() % 64));
            submitted++;
        }
        if (rng() % 2) std::this_thread::yield();
        done += ReapIo().size();
        if (done < total && (submitted == total || submitted - done >= 16)) {
            auto st = WaitIo(1);
            ASSERT_GE(st.size(), 1u) << "stalled with " << submitted - done << " commands in flight: lost";
            done += st.size();
        }
    }
    NvmePciStats s = dev_->stats();
    EXPECT_EQ(s.error_completions, 0u);
    // Commands seen only through the shadow tail need a completion's look to win a race with
    // the host's MMIO write, so their count is left to timing; the CQ heads never ring.
    EXPECT_EQ(cq_rings_, 0) << "the shadow CQ heads were not used";
    printf("dbbuf stress: %zu commands, %llu SQ MMIO doorbells (incl. admin), %llu from shadow only, %d CQ rings\n",
           total, (unsigned long long)s.sq_doorbells, (unsigned long long)s.shadow_commands, cq_rings_);
}

// A host may reuse an SQ entry once the controller has fetched it, before the command
// completes, so more commands can be in flight than the SQ has entries. The device's requests
// are made per SQ entry when the SQ is created; these extra commands must grow the pool (and
// later ones reuse it), never fail or wait.
TEST_F(Dbbuf, MoreCommandsInFlightThanSqEntriesGrowTheRequestPool) {
    constexpr uint32_t kSmall = 4;
    ASSERT_EQ(Admin(nvme::qtest::SetFeatures(0x07, 0x00030003)), 0);
    ASSERT_EQ(Admin(Cmd(0x05).u64(24, kIoCq).cdw(10, 1 | (kIoEntries - 1) << 16).cdw(11, 1 | 2 | 1u << 16)), 0);
    ASSERT_EQ(Admin(Cmd(0x01).u64(24, kIoSq).cdw(10, 1 | (kSmall - 1) << 16).cdw(11, 1 | 1u << 16)), 0);
    io_head_ = 0;
    io_phase_ = 1;
    uint32_t tail = 0;
    for (int round = 0; round < 2; round++) {
        CloseGate();
        const int w = writes_seen();
        const int kCommands = 10;
        for (int i = 0; i < kCommands; i++) {
            Cmd c = WriteCmd(uint64_t(i)).cid(uint16_t(100 + i));
            ASSERT_TRUE(mem_.Write(kIoSq + 64ull * tail, c.s.b, 64).ok());
            tail = (tail + 1) % kSmall;
            MmioSqTail(1, tail);  // fetched before the write returns: the entry is free again
        }
        ASSERT_TRUE(WaitWriteAtGate(w));
        EXPECT_EQ(dev_->stats().inflight, uint32_t(kCommands)) << "round " << round;
        OpenGate();
        auto st = WaitIo(kCommands);
        ASSERT_EQ(st.size(), size_t(kCommands)) << "round " << round;
        for (uint16_t v : st) EXPECT_EQ(v, 0);
    }
    for (int i = 0; i < 1000 && dev_->stats().inflight != 0; i++) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_EQ(dev_->stats().inflight, 0u);
}

// A controller reset while commands are in flight: their SQ (and its requests) is gone from
// the device's view, the requests come back when the commands finish, and the controller
// works again after re-enabling.
TEST_F(Dbbuf, ResetWithCommandsInFlightThenQueuesAgain) {
    ASSERT_EQ(ConfigDbbuf(), 0);
    CreateIoQueues();
    CloseGate();
    const int w = writes_seen();
    for (int i = 0; i < 3; i++) SubmitIo(WriteCmd(uint64_t(i)));
    ASSERT_TRUE(WaitWriteAtGate(w));
    std::thread opener([this] {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        OpenGate();
    });
    Disable();
    opener.join();
    for (int i = 0; i < 2000 && dev_->stats().inflight != 0; i++) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_EQ(dev_->stats().inflight, 0u);
    // As a host's fresh queue memory: stale entries with phase 1 would read as completions.
    std::vector<uint8_t> zeros(16 * kIoEntries, 0);
    ASSERT_TRUE(mem_.Write(kAcq, zeros.data(), 16 * kAdminEntries).ok());
    ASSERT_TRUE(mem_.Write(kIoCq, zeros.data(), zeros.size()).ok());
    Enable();
    ASSERT_EQ(ConfigDbbuf(), 0);
    CreateIoQueues();
    for (int i = 0; i < 20; i++) SubmitIo(i % 2 ? ReadCmd(uint64_t(i)) : WriteCmd(uint64_t(i)));
    auto st = WaitIo(20);
    ASSERT_EQ(st.size(), 20u);
    for (uint16_t v : st) EXPECT_EQ(v, 0);
}

TEST_F(Dbbuf, ControllerResetForgetsTheBuffers) {
    ASSERT_EQ(ConfigDbbuf(), 0);
    CreateIoQueues();
    EXPECT_TRUE(SubmitIo(ReadCmd(0)));
    ASSERT_EQ(WaitIo(1).size(), 1u);
    Disable();
    EXPECT_FALSE(dev_->stats().dbbuf_active) << "CC.EN 1 -> 0 clears the doorbell buffers";
    Enable();
    CreateIoQueues();
    // Without a new 7Ch, doorbells are MMIO only: a shadow value is not a tail.
    mem_.Store32(kDbs + 8, 5);
    mem_.Store32(kEis + 8, 0x1234);
    uint32_t ei_before = mem_.Load32(kEis + 8);
    Cmd c = ReadCmd(0).cid(99);
    ASSERT_TRUE(mem_.Write(kIoSq, c.s.b, 64).ok());
    MmioSqTail(1, 1);
    io_tail_ = 1;
    auto st = WaitIo(1);
    ASSERT_EQ(st.size(), 1u);
    EXPECT_EQ(st[0], 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_TRUE(ReapIo().empty()) << "the stale shadow tail 5 must not be fetched";
    EXPECT_EQ(mem_.Load32(kEis + 8), ei_before) << "no EventIdx written without a buffer";
}

TEST_F(Dbbuf, InvalidBufferAddressesAreInvalidField) {
    EXPECT_EQ(ConfigDbbuf(kDbs + 8, kEis) & 0x7ff, 0x002) << "PRP1 not page aligned";
    EXPECT_EQ(ConfigDbbuf(kDbs, kEis + 0x200) & 0x7ff, 0x002) << "PRP2 not page aligned";
    EXPECT_EQ(ConfigDbbuf(0, kEis) & 0x7ff, 0x002) << "PRP1 zero";
    EXPECT_EQ(ConfigDbbuf(kDbs, 0) & 0x7ff, 0x002) << "PRP2 zero";
    EXPECT_EQ(ConfigDbbuf(1ull << 40, kEis) & 0x7ff, 0x002) << "PRP1 outside guest memory";
    EXPECT_EQ(ConfigDbbuf(kDbs, kGuestSize) & 0x7ff, 0x002) << "PRP2 outside guest memory";
    EXPECT_FALSE(dev_->stats().dbbuf_active);
    EXPECT_EQ(ConfigDbbuf(kDbs, kEis), 0) << "the valid pair is accepted";
    EXPECT_EQ(dev_->stats().dbbuf_configs, 1u);
}

}  // namespace
}  // namespace qzns::vfu
