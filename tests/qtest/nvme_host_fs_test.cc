// The host file system under the image fills up or fails while hosts write through the
// controller: each failure reaches the host as the NVMe status a drive would give (Capacity
// Exceeded for a full file system, a media error for EIO; hw/nvme/status.cc), data the host
// already had acknowledged and flushed stays readable, writing resumes once space is freed,
// and the image is consistent afterwards.
#include <set>

#include "tests/qtest/nvme-qtest.h"

namespace qzns::nvme::qtest {
namespace {

constexpr uint64_t kBlock = 4096;  // the modelled file system's allocation unit
constexpr uint16_t kCapacityExceeded = 0x081, kWriteFault = 0x280, kReadError = 0x281;
constexpr uint32_t kZoneLbas = (1 << 20) / 512;

// A file system with no free blocks while `full` is set: writes into blocks the image file
// already holds succeed, writes that need a new block (a hole, or past the end of the file)
// fail with ENOSPC, and punching a hole gives blocks back, as on ext4 or tmpfs.
class FullFileSystem {
public:
    // Everything below `size` counts as allocated (the image as created).
    explicit FullFileSystem(uint64_t size) : initial_blocks_((size + kBlock - 1) / kBlock) {}

    Status Admit(OpKind kind, uint64_t off, uint64_t len) {
        util::MutexLock lk(mu_);
        uint64_t b = off / kBlock, e = (off + len + kBlock - 1) / kBlock;
        if (kind == OpKind::kPunchHole) {
            for (uint64_t i = b; i < e; i++) {
                held_.erase(i);
                if (i < initial_blocks_) punched_.insert(i);
            }
            return Status::Ok();
        }
        if (kind != OpKind::kWrite || len == 0) return Status::Ok();
        for (uint64_t i = b; i < e; i++)
            if (full_ && !Held(i)) return Status::Error(ENOSPC, "No space left on device (simulated)");
        for (uint64_t i = b; i < e; i++) {
            if (i < initial_blocks_) punched_.erase(i);
            else held_.insert(i);
        }
        return Status::Ok();
    }
    void SetFull(bool full) {
        util::MutexLock lk(mu_);
        full_ = full;
    }

private:
    bool Held(uint64_t i) const REQUIRES(mu_) { return i < initial_blocks_ ? !punched_.count(i) : held_.count(i) > 0; }

    util::Mutex mu_;  // the block maps; the controller's worker threads write concurrently
    const uint64_t initial_blocks_;
    std::set<uint64_t> held_ GUARDED_BY(mu_);     // allocated blocks past the initial size
    std::set<uint64_t> punched_ GUARDED_BY(mu_);  // holes punched below it
    bool full_ GUARDED_BY(mu_) = false;
};

class HostFileSystem : public NvmeQtest {
protected:
    void SetUp() override {
        ZonedImageSpec z;
        image_ = std::make_unique<MemImage>(z, false, /*faults=*/true);
        auto size = image_->fault()->Size();
        ASSERT_TRUE(size.ok());
        fs_ = std::make_shared<FullFileSystem>(*size);
        image_->fault()->SetHook([fs = fs_](OpKind kind, uint64_t off, uint64_t len) { return fs->Admit(kind, off, len); });
        SetUpTarget(z);
        ConnectAndEnable();
    }

    uint64_t ZoneSlba(uint32_t z) const { return uint64_t{z} * kZoneLbas; }
    // Image offset of a ZNS namespace LBA: the namespace starts after the conventional zones,
    // which form the other namespace.
    uint64_t ImageOffset(uint64_t slba) const { return (slba + uint64_t{ZonedImageSpec{}.nr_conv} * kZoneLbas) * 512; }
    // Write pointer and state of zone z, as Report Zones gives them (a host re-reads them after
    // a failed write, as Linux's zonefs does).
    std::pair<uint64_t, int> Zone(uint32_t z) {
        Completion c = Io().RunC2h(ZoneRecv(zns_nsid(), ZoneSlba(z), 128, 0, 0, true), 128);
        EXPECT_EQ(c.status(), 0);
        return {R64(c.data, 64 + 24), R8(c.data, 65) >> 4};
    }
    Completion Write(uint64_t slba, const std::vector<uint8_t>& data) {
        return Io().Run(Rw(0x01, zns_nsid(), slba, uint32_t(data.size() / 512)).sgl(uint32_t(data.size())), data);
    }
    Completion Read(uint64_t slba, uint32_t bytes) {
        return Io().RunC2h(Rw(0x02, zns_nsid(), slba, bytes / 512).sgl(bytes), bytes);
    }
    // Drops the controller and closes the image as a clean shutdown would.
    void CloseAll() {
        io_.clear();
        admin_.reset();
        target_.reset();
        subsys_.reset();
        ASSERT_TRUE(be_->Close().ok());
        be_.reset();
    }
    void ExpectImageClean() {
        auto img = image_->OpenImage({.write = true});
        ASSERT_TRUE(img.ok()) << img.status().message();
        auto r = (*img)->Check(qcow2::RepairMode::kNone);
        ASSERT_TRUE(r.ok()) << r.status().message();
        EXPECT_EQ(r->corruptions, 0u);
        EXPECT_EQ(r->leaks, 0u);
        EXPECT_EQ(r->check_errors, 0u);
        for (const std::string& m : r->messages) ADD_FAILURE() << m;
        EXPECT_TRUE((*img)->Close().ok());
    }

    std::shared_ptr<FullFileSystem> fs_;
};

TEST_F(HostFileSystem, FullFileSystemIsCapacityExceededAndLosesNothing) {
    const auto a = Pattern(64 << 10, 1), b = Pattern(64 << 10, 2), c = Pattern(64 << 10, 3);
    ASSERT_EQ(Write(ZoneSlba(2), a).status(), 0);
    ASSERT_EQ(Io().Run(Cmd(0x00).nsid(zns_nsid())).status(), 0);

    fs_->SetFull(true);
    // A write into a zone never written needs new blocks; so does the rest of a zone whose
    // first 64 KiB are stored. Both are refused for good: Capacity Exceeded with DNR.
    Completion w = Write(ZoneSlba(3), b);
    EXPECT_EQ(w.sc(), kCapacityExceeded);
    EXPECT_TRUE(w.dnr());
    w = Write(Zone(2).first, b);
    EXPECT_EQ(w.sc(), kCapacityExceeded);
    EXPECT_TRUE(w.dnr());
    // A flush has nothing new to store here, or fails the same way; never another error.
    uint16_t fst = Io().Run(Cmd(0x00).nsid(zns_nsid())).status();
    EXPECT_TRUE(fst == 0 || fst == (kCapacityExceeded | 0x4000)) << std::hex << fst;
    Completion r = Read(ZoneSlba(2), 64 << 10);
    ASSERT_EQ(r.status(), 0);
    EXPECT_EQ(r.data, a) << "acknowledged and flushed data survives the full file system";

    fs_->SetFull(false);  // the administrator frees space
    uint64_t wp2 = Zone(2).first, wp3 = Zone(3).first;
    ASSERT_EQ(Write(wp2, b).status(), 0) << "writing resumes once space is free";
    ASSERT_EQ(Write(wp3, c).status(), 0);
    ASSERT_EQ(Io().Run(Cmd(0x00).nsid(zns_nsid())).status(), 0);
    EXPECT_EQ(Read(ZoneSlba(2), 64 << 10).data, a);
    EXPECT_EQ(Read(wp2, 64 << 10).data, b);
    EXPECT_EQ(Read(wp3, 64 << 10).data, c);

    CloseAll();
    ExpectImageClean();
    // After a restart the same data is there.
    be_ = image_->Open();
    ASSERT_TRUE(be_);
    std::vector<uint8_t> got(64 << 10);
    ASSERT_TRUE(be_->Read(ImageOffset(ZoneSlba(2)), got.data(), got.size()).ok());
    EXPECT_EQ(got, a);
    ASSERT_TRUE(be_->Read(ImageOffset(wp2), got.data(), got.size()).ok());
    EXPECT_EQ(got, b);
    ASSERT_TRUE(be_->Read(ImageOffset(wp3), got.data(), got.size()).ok());
    EXPECT_EQ(got, c);
}

TEST_F(HostFileSystem, FullFileSystemAtFlushKeepsMetadataForTheNextFlush) {
    const auto a = Pattern(64 << 10, 4);
    ASSERT_EQ(Write(ZoneSlba(2), a).status(), 0);  // acknowledged, metadata not yet written
    // Every metadata write needs space too: no block may be written at all.
    image_->fault()->FailAfter(0, ENOSPC, OpKind::kWrite | OpKind::kTruncate);
    Completion f = Io().Run(Cmd(0x00).nsid(zns_nsid()));
    EXPECT_EQ(f.sc(), kCapacityExceeded) << "the flush could not make the write durable";
    EXPECT_TRUE(f.dnr());
    image_->fault()->ClearFaults();
    image_->fault()->SetHook([fs = fs_](OpKind kind, uint64_t off, uint64_t len) { return fs->Admit(kind, off, len); });
    ASSERT_EQ(Io().Run(Cmd(0x00).nsid(zns_nsid())).status(), 0) << "the retried flush stores it";
    CloseAll();
    ExpectImageClean();
    be_ = image_->Open();
    ASSERT_TRUE(be_);
    std::vector<uint8_t> got(64 << 10);
    ASSERT_TRUE(be_->Read(ImageOffset(ZoneSlba(2)), got.data(), got.size()).ok());
    EXPECT_EQ(got, a);
}

TEST_F(HostFileSystem, HostIoErrorsAreMediaErrorsNeverSilent) {
    const auto a = Pattern(64 << 10, 5), b = Pattern(64 << 10, 6);
    ASSERT_EQ(Write(ZoneSlba(2), a).status(), 0);
    ASSERT_EQ(Io().Run(Cmd(0x00).nsid(zns_nsid())).status(), 0);

    image_->fault()->FailAfter(0, EIO, OpKind::kWrite);
    Completion w = Write(Zone(2).first, b);
    EXPECT_EQ(w.sc(), kWriteFault);
    EXPECT_FALSE(w.dnr()) << "a host I/O error may be transient";
    image_->fault()->ClearFaults();

    image_->fault()->FailAfter(0, EIO, OpKind::kRead);
    Completion r = Read(ZoneSlba(2), 64 << 10);
    EXPECT_EQ(r.sc(), kReadError);
    EXPECT_NE(r.data, a) << "no data is returned with the error";
    image_->fault()->ClearFaults();

    image_->fault()->FailAfter(0, EIO, OpKind::kSync);
    EXPECT_EQ(Io().Run(Cmd(0x00).nsid(zns_nsid())).sc(), kWriteFault) << "a failed fsync fails the Flush";
    image_->fault()->ClearFaults();

    r = Read(ZoneSlba(2), 64 << 10);
    ASSERT_EQ(r.status(), 0);
    EXPECT_EQ(r.data, a);
}

// A write the host file system refused leaves the zone as it was: Empty at its start, so the
// host's retry at the same LBA lands (a wp advanced over the failed write would refuse it with
// Zone Invalid Write, and the next flush would persist never-written sectors below the wp).
TEST_F(HostFileSystem, AFailedWriteLeavesTheWritePointerWhereItWas) {
    fs_->SetFull(true);
    EXPECT_EQ(Write(ZoneSlba(3), Pattern(4096, 7)).sc(), kCapacityExceeded);
    EXPECT_EQ(Zone(3), std::make_pair(ZoneSlba(3), 1)) << "still Empty at its start";
    fs_->SetFull(false);
    EXPECT_EQ(Write(ZoneSlba(3), Pattern(4096, 7)).status(), 0) << "the host's retry at the same LBA";
}

}  // namespace
}  // namespace qzns::nvme::qtest
