// Zone-linear allocation (block/qcow2/qcow2-zone-extent.cc, the zoned layer's extent path): a
// sequential zone's data is one contiguous host extent, written with no metadata update and
// reset with one hole punch; the image stays a consistent qcow2; zones an older image stored
// cluster by cluster keep working and become linear after a reset; a reset never erases a
// write that its completion allowed.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "block/block-backend.h"
#include "block/file-fault.h"
#include "block/qcow2/qcow2.h"
#include "block/qcow2/format.h"
#include "block/zoned/zone-word.h"

namespace qzns {
namespace {

constexpr uint64_t kK = 1024;
constexpr uint64_t kCluster = 4096;
constexpr uint64_t kZone = 64 * kK;
constexpr uint64_t kCap = 48 * kK;
constexpr uint32_t kConv = 1;
constexpr uint32_t kZones = 12;

qcow2::CreateOptions Options(const std::string& prealloc = "off") {
    qcow2::CreateOptions co;
    co.size = kZones * kZone;
    co.cluster_size = kCluster;
    co.preallocation = prealloc;
    qcow2::ZonedGeometry g;
    g.zone_size = kZone;
    g.zone_capacity = kCap;
    g.nr_conv_zones = kConv;
    g.max_append_bytes = 16 * kK;
    co.zoned = g;
    return co;
}

std::vector<uint8_t> Pattern(uint64_t len, uint8_t seed) {
    std::vector<uint8_t> v(len);
    for (uint64_t i = 0; i < len; i++) v[i] = static_cast<uint8_t>(seed * 31 + i * 7 + (i >> 9));
    return v;
}

class ExtentDisk {
public:
    explicit ExtentDisk(const qcow2::CreateOptions& co = Options()) : ff_(NewFaultFile(NewMemFile())) {
        Status st = qcow2::Create(BorrowFile(ff_.get()), co);
        EXPECT_TRUE(st.ok()) << st.message();
    }
    std::unique_ptr<qcow2::Image> OpenImage() {
        auto img = qcow2::Image::Open(BorrowFile(ff_.get()), {.write = true}, nullptr);
        EXPECT_TRUE(img.ok()) << img.status().message();
        return img.ok() ? std::move(*img) : nullptr;
    }
    std::unique_ptr<BlockBackend> Open() {
        auto be = BlockBackend::OpenDriver(OpenImage());
        EXPECT_TRUE(be.ok()) << be.status().message();
        return be.ok() ? std::move(*be) : nullptr;
    }
    FaultFile& file() { return *ff_; }

    // Host offsets of the zone's capacity clusters (0 where unmapped).
    std::vector<uint64_t> Hosts(uint32_t z) {
        auto img = OpenImage();
        std::vector<uint64_t> out;
        for (uint64_t off = 0; off < kCap; off += kCluster) {
            auto e = img->L2EntryFor(z * kZone + off);
            EXPECT_TRUE(e.ok());
            out.push_back(e.ok() ? (*e & qcow2::kL2OffsetMask) : 0);
        }
        EXPECT_TRUE(img->Close().ok());
        return out;
    }
    bool Linear(uint32_t z) {
        auto h = Hosts(z);
        for (size_t i = 0; i < h.size(); i++)
            if (h[0] == 0 || h[i] != h[0] + i * kCluster) return false;
        return true;
    }
    void ExpectCleanCheck() {
        auto img = OpenImage();
        auto r = img->Check(qcow2::RepairMode::kNone);
        ASSERT_TRUE(r.ok()) << r.status().message();
        EXPECT_EQ(r->corruptions, 0u);
        EXPECT_EQ(r->leaks, 0u);
        EXPECT_EQ(r->zone_errors, 0u);
        EXPECT_TRUE(img->Close().ok());
    }

private:
    std::unique_ptr<FaultFile> ff_;
};

std::vector<uint8_t> Read(BlockBackend& b, uint64_t off, uint64_t len) {
    std::vector<uint8_t> v(len, 0xee);
    BlkResult r = b.Read(off, v.data(), len);
    EXPECT_TRUE(r.ok()) << r.message();
    return v;
}

TEST(ZoneExtent, InterleavedWritersStillGiveEachZoneOneExtent) {
    ExtentDisk d;
    {
        auto b = d.Open();
        // Two zones written in alternation, as two writers would: each zone is still linear.
        for (uint64_t off = 0; off < kCap; off += 8 * kK) {
            for (uint32_t z : {2u, 3u}) {
                auto p = Pattern(8 * kK, static_cast<uint8_t>(z + off));
                ASSERT_TRUE(b->Write(z * kZone + off, p.data(), p.size(), false).ok());
            }
        }
        ASSERT_TRUE(b->Close().ok());
    }
    EXPECT_TRUE(d.Linear(2));
    EXPECT_TRUE(d.Linear(3));
    EXPECT_NE(d.Hosts(2)[0], d.Hosts(3)[0]);
    d.ExpectCleanCheck();
    auto b = d.Open();
    for (uint64_t off = 0; off < kCap; off += 8 * kK)
        EXPECT_EQ(Read(*b, 3 * kZone + off, 8 * kK), Pattern(8 * kK, static_cast<uint8_t>(3 + off)));
    ASSERT_TRUE(b->Close().ok());
}

TEST(ZoneExtent, WritesIntoAnExtentUpdateNoMetadata) {
    ExtentDisk d;
    auto b = d.Open();
    uint64_t zs = 4 * kZone;
    auto p = Pattern(4 * kK, 1);
    ASSERT_TRUE(b->Write(zs, p.data(), p.size(), false).ok());
    ASSERT_TRUE(b->Flush().ok());
    uint64_t before = d.file().stats().writes;
    for (int i = 1; i <= 8; i++) ASSERT_TRUE(b->Write(zs + i * 4 * kK, p.data(), p.size(), false).ok());
    ASSERT_TRUE(b->Flush().ok());
    // Eight data writes and one zone-word write: no L2 table, refcount block or header.
    EXPECT_EQ(d.file().stats().writes - before, 9u);
    ASSERT_TRUE(b->Close().ok());
}

TEST(ZoneExtent, ResetOfAFullZoneIsOnePunchAndKeepsTheImageConsistent) {
    ExtentDisk d;
    auto b = d.Open();
    uint32_t z = 5;
    uint64_t zs = z * kZone;
    auto p = Pattern(kCap, 2);
    ASSERT_TRUE(b->Write(zs, p.data(), p.size(), false).ok());
    ASSERT_EQ(b->GetZone(z)->state, ZoneState::kFull);
    ASSERT_TRUE(b->Flush().ok());
    uint64_t punches = d.file().stats().punch_holes;
    ASSERT_TRUE(b->ZoneMgmt(ZoneMgmtOp::kReset, zs, false).ok());
    EXPECT_EQ(d.file().stats().punch_holes - punches, 1u);
    EXPECT_EQ(Read(*b, zs, kCap), std::vector<uint8_t>(kCap, 0));
    // After a power cut the zone is Empty and reads zeros, too.
    {
        auto copy = d.file().CloneDurable();
        ASSERT_TRUE(copy.ok());
        auto img = qcow2::Image::Open(BorrowFile(copy->get()), {.write = true}, nullptr);
        ASSERT_TRUE(img.ok()) << img.status().message();
        auto c = BlockBackend::OpenDriver(std::move(*img));
        ASSERT_TRUE(c.ok()) << c.status().message();
        EXPECT_EQ((*c)->GetZone(z)->state, ZoneState::kEmpty);
        EXPECT_EQ(Read(**c, zs, kCap), std::vector<uint8_t>(kCap, 0));
        ASSERT_TRUE((*c)->Close().ok());
    }
    // The zone is used again in the same extent.
    auto q = Pattern(kCap, 3);
    ASSERT_TRUE(b->Write(zs, q.data(), q.size(), false).ok());
    ASSERT_TRUE(b->Close().ok());
    EXPECT_TRUE(d.Linear(z));
    d.ExpectCleanCheck();
    auto c = d.Open();
    EXPECT_EQ(Read(*c, zs, kCap), q);
    ASSERT_TRUE(c->Close().ok());
}

TEST(ZoneExtent, ScatteredZonesOfOlderImagesWorkAndBecomeLinearAfterReset) {
    ExtentDisk d;
    uint32_t za = 6, zb = 7;
    {
        // The layout earlier versions wrote: the zones' clusters interleaved in the file.
        auto img = d.OpenImage();
        for (uint64_t off = 0; off < 16 * kK; off += kCluster) {
            for (uint32_t z : {za, zb}) {
                auto p = Pattern(kCluster, static_cast<uint8_t>(z + off));
                ASSERT_TRUE(img->Write(z * kZone + off, p.data(), p.size()).ok());
            }
        }
        uint64_t words[2];
        for (uint32_t i = 0; i < 2; i++)
            words[i] = ZoneWord::Make(ZoneState::kClosed, ZoneType::kSeqWriteRequired, 0,
                                      ((za + i) * kZone + 16 * kK) / 512).raw;
        ASSERT_TRUE(img->WriteZoneWords(za, 2, words).ok());
        ASSERT_TRUE(img->Close().ok());
    }
    ASSERT_FALSE(d.Linear(za));
    {
        auto b = d.Open();
        auto tail = Pattern(8 * kK, 9);
        ASSERT_TRUE(b->Write(za * kZone + 16 * kK, tail.data(), tail.size(), false).ok());
        for (uint64_t off = 0; off < 16 * kK; off += kCluster)
            EXPECT_EQ(Read(*b, za * kZone + off, kCluster), Pattern(kCluster, static_cast<uint8_t>(za + off)));
        EXPECT_EQ(Read(*b, za * kZone + 16 * kK, 8 * kK), tail);
        ASSERT_TRUE(b->ZoneMgmt(ZoneMgmtOp::kReset, za * kZone, false).ok());
        EXPECT_EQ(Read(*b, za * kZone, kCap), std::vector<uint8_t>(kCap, 0));
        auto p = Pattern(kCap, 4);
        ASSERT_TRUE(b->Write(za * kZone, p.data(), p.size(), false).ok());
        EXPECT_EQ(Read(*b, za * kZone, kCap), p);
        ASSERT_TRUE(b->Close().ok());
    }
    EXPECT_TRUE(d.Linear(za));
    EXPECT_FALSE(d.Linear(zb));
    d.ExpectCleanCheck();
}

TEST(ZoneExtent, MetadataPreallocationMapsEverySequentialZoneAtCreate) {
    ExtentDisk d(Options("metadata"));
    for (uint32_t z = kConv; z < kZones; z++) EXPECT_TRUE(d.Linear(z)) << "zone " << z;
    d.ExpectCleanCheck();
    auto b = d.Open();
    EXPECT_EQ(Read(*b, 3 * kZone, kCap), std::vector<uint8_t>(kCap, 0));
    uint64_t before = d.file().stats().writes;
    auto p = Pattern(4 * kK, 5);
    ASSERT_TRUE(b->Write(3 * kZone, p.data(), p.size(), false).ok());
    EXPECT_EQ(d.file().stats().writes - before, 1u);  // the data only: the mapping exists
    ASSERT_TRUE(b->Close().ok());
}

// Runs a callback, outside any lock, before each hole punch reaches the file.
class PunchGate final : public File {
public:
    PunchGate(File* inner, std::function<void()> before_punch) : inner_(inner), before_(std::move(before_punch)) {}
    Status Pread(void* buf, uint64_t len, uint64_t off) override { return inner_->Pread(buf, len, off); }
    Status Pwrite(const void* buf, uint64_t len, uint64_t off) override { return inner_->Pwrite(buf, len, off); }
    Status Sync() override { return inner_->Sync(); }
    Result<uint64_t> Size() override { return inner_->Size(); }
    Status Truncate(uint64_t size) override { return inner_->Truncate(size); }
    Status PunchHole(uint64_t off, uint64_t len) override {
        before_();
        return inner_->PunchHole(off, len);
    }
    Result<uint64_t> AllocatedBytes() override { return inner_->AllocatedBytes(); }
    const std::string& name() const override { return inner_->name(); }

private:
    File* inner_;
    std::function<void()> before_;
};

TEST(ZoneExtent, AWriteAllowedByAResetIsNeverErasedByItsPunch) {
    auto mem = NewMemFile();
    ASSERT_TRUE(qcow2::Create(BorrowFile(mem.get()), Options()).ok());
    // Hold the reset's hole punch until a write to the zone has been submitted.
    std::atomic<bool> armed{false}, punching{false}, write_submitted{false};
    auto gate = std::make_unique<PunchGate>(mem.get(), [&] {
        if (!armed || punching.exchange(true)) return;
        auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!write_submitted && std::chrono::steady_clock::now() < until) std::this_thread::yield();
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    });
    auto img = qcow2::Image::Open(std::move(gate), {.write = true}, nullptr);
    ASSERT_TRUE(img.ok()) << img.status().message();
    auto be = BlockBackend::OpenDriver(std::move(*img));
    ASSERT_TRUE(be.ok()) << be.status().message();
    BlockBackend& b = **be;
    uint32_t z = 8;
    uint64_t zs = z * kZone;
    auto old = Pattern(kCap, 6);
    ASSERT_TRUE(b.Write(zs, old.data(), old.size(), false).ok());
    armed = true;
    auto fresh = Pattern(8 * kK, 7);
    BlkResult wr;
    std::thread writer([&] {
        while (!punching) std::this_thread::yield();
        write_submitted = true;
        // The zone's word already says Empty; the write must wait for the punch, not race it.
        wr = b.Write(zs, fresh.data(), fresh.size(), false);
    });
    BlkResult rr = b.ZoneMgmt(ZoneMgmtOp::kReset, zs, false);
    writer.join();
    ASSERT_TRUE(rr.ok()) << rr.message();
    ASSERT_TRUE(wr.ok()) << wr.message();
    EXPECT_EQ(b.GetZone(z)->wp, zs + fresh.size());
    EXPECT_EQ(Read(b, zs, fresh.size()), fresh);
    ASSERT_TRUE(b.Close().ok());
}

// The asynchronous twin: a write submitted while a reset holds its zone does not block the
// submitter; it is parked, decided when the reset releases the zone, and lands after the punch.
TEST(ZoneExtent, AnAsyncWriteToAZoneBeingResetIsParkedNotBlocked) {
    auto mem = NewMemFile();
    ASSERT_TRUE(qcow2::Create(BorrowFile(mem.get()), Options()).ok());
    std::atomic<bool> armed{false}, punching{false}, submit_returned{false}, returned_during_punch{false};
    auto gate = std::make_unique<PunchGate>(mem.get(), [&] {
        if (!armed || punching.exchange(true)) return;
        auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!submit_returned && std::chrono::steady_clock::now() < until) std::this_thread::yield();
        returned_during_punch = submit_returned.load();
    });
    auto img = qcow2::Image::Open(std::move(gate), {.write = true}, nullptr);
    ASSERT_TRUE(img.ok()) << img.status().message();
    auto be = BlockBackend::OpenDriver(std::move(*img));
    ASSERT_TRUE(be.ok()) << be.status().message();
    BlockBackend& b = **be;
    uint32_t z = 8;
    uint64_t zs = z * kZone;
    auto old = Pattern(kCap, 6);
    ASSERT_TRUE(b.Write(zs, old.data(), old.size(), false).ok());
    armed = true;
    auto fresh = Pattern(8 * kK, 9);
    BlkRequest r;
    r.op = BlkOp::kWrite;
    r.off = zs;
    r.buf = fresh.data();
    r.len = fresh.size();
    BlkWaiter w;
    w.Arm(r);
    std::thread submitter([&] {
        while (!punching) std::this_thread::yield();
        b.Submit(&r);
        submit_returned = true;
    });
    BlkResult rr = b.ZoneMgmt(ZoneMgmtOp::kReset, zs, false);
    submitter.join();
    ASSERT_TRUE(rr.ok()) << rr.message();
    BlkResult wr = w.Wait(r);
    ASSERT_TRUE(wr.ok()) << wr.message();
    EXPECT_TRUE(returned_during_punch) << "Submit waited for the reset";
    EXPECT_EQ(b.GetZone(z)->wp, zs + fresh.size());
    EXPECT_EQ(Read(b, zs, fresh.size()), fresh);
    ASSERT_TRUE(b.Close().ok());
}

}  // namespace
}  // namespace qzns
