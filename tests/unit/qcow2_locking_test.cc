// qcow2::Image never holds its metadata lock across a File call on the data path: while one
// thread is stuck inside the File (an L2 table or refcount block being read on a cache miss, a
// metadata write-back), other threads' reads and in-place writes of mapped, cached regions
// complete. Each test blocks one File call from inside a wrapper File and checks that a second
// request finishes before the blocked one is let go; with the lock held across the call the
// second request would wait for it (the test then fails after a timeout instead of hanging).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "block/file-fault.h"
#include "block/qcow2/qcow2.h"
#include "util/mutex.h"

namespace qzns {
namespace {

using namespace std::chrono_literals;

#define ASSERT_OK(expr)                                          \
    do {                                                         \
        ::qzns::Status st_ = (expr);                             \
        ASSERT_TRUE(st_.ok()) << #expr << ": " << st_.message(); \
    } while (0)

constexpr uint64_t kCluster = 4096;
// One L2 table maps 512 clusters (2 MiB) at this cluster size: regions 8 MiB apart use
// different L2 tables.
constexpr uint64_t kRegionA = 0;
constexpr uint64_t kRegionB = 8 << 20;
constexpr uint64_t kRegionC = 16 << 20;
constexpr uint64_t kSize = 32 << 20;
constexpr auto kPatience = 5s;

// Forwards to `inner`, except that once armed it holds the first call `match` accepts until
// Release() (or the gate is destroyed).
class GateFile final : public File {
public:
    using Match = std::function<bool(OpKind kind, uint64_t off, uint64_t len)>;
    explicit GateFile(File* inner) : inner_(inner) {}
    ~GateFile() override { Release(); }

    void Arm(Match m) {
        util::MutexLock l(m_);
        match_ = std::move(m);
        armed_ = true;
        entered_ = released_ = false;
    }
    // True once a call is held in the gate.
    bool WaitEntered() {
        util::MutexLock l(m_);
        return cv_.WaitFor(m_, kPatience, [&]() REQUIRES(m_) { return entered_; });
    }
    void Release() {
        {
            util::MutexLock l(m_);
            released_ = true;
            armed_ = false;
        }
        cv_.NotifyAll();
    }

    Status Pread(void* buf, uint64_t len, uint64_t off) override {
        if (len == kCluster) table_reads++;
        Hold(OpKind::kRead, off, len);
        return inner_->Pread(buf, len, off);
    }
    Status Pwrite(const void* buf, uint64_t len, uint64_t off) override {
        Hold(OpKind::kWrite, off, len);
        return inner_->Pwrite(buf, len, off);
    }
    Status Sync() override {
        Hold(OpKind::kSync, 0, 0);
        return inner_->Sync();
    }
    Result<uint64_t> Size() override { return inner_->Size(); }
    Status Truncate(uint64_t size) override {
        Hold(OpKind::kTruncate, size, 0);
        return inner_->Truncate(size);
    }
    Status PunchHole(uint64_t off, uint64_t len) override {
        Hold(OpKind::kPunchHole, off, len);
        return inner_->PunchHole(off, len);
    }
    Result<uint64_t> AllocatedBytes() override { return inner_->AllocatedBytes(); }
    const std::string& name() const override { return inner_->name(); }

    std::atomic<int> table_reads{0};  // cluster-sized reads: metadata table loads

private:
    void Hold(OpKind kind, uint64_t off, uint64_t len) {
        util::MutexLock l(m_);
        if (!armed_ || !match_(kind, off, len)) return;
        armed_ = false;
        entered_ = true;
        cv_.NotifyAll();
        cv_.Wait(m_, [&]() REQUIRES(m_) { return released_; });
    }

    File* inner_;
    util::Mutex m_;  // with cv_: the gate's state
    util::CondVar cv_;
    Match match_ GUARDED_BY(m_);
    bool armed_ GUARDED_BY(m_) = false, entered_ GUARDED_BY(m_) = false, released_ GUARDED_BY(m_) = false;
};

std::vector<uint8_t> Pattern(uint64_t len, uint8_t seed) {
    std::vector<uint8_t> v(len);
    for (uint64_t i = 0; i < len; i++) v[i] = static_cast<uint8_t>(seed * 37 + i * 11 + (i >> 8));
    return v;
}

// Runs `fn` on its own thread and reports whether it finished within the patience limit. The
// thread is joined by the returned handle's owner (Finish) even when it did not.
class Background {
public:
    explicit Background(std::function<Status()> fn)
        : t_([this, fn = std::move(fn)] {
              st_ = fn();
              done_ = true;
          }) {}
    ~Background() {
        if (t_.joinable()) t_.join();
    }
    bool DoneWithin(std::chrono::milliseconds d) {
        auto until = std::chrono::steady_clock::now() + d;
        while (!done_ && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
        return done_;
    }
    bool done() const { return done_; }
    Status Finish() {
        t_.join();
        return st_;
    }

private:
    std::atomic<bool> done_{false};
    Status st_;
    std::thread t_;
};

class Qcow2Locking : public ::testing::Test {
protected:
    void SetUp() override {
        qcow2::CreateOptions co;
        co.size = kSize;
        co.cluster_size = kCluster;
        ASSERT_OK(qcow2::Create(BorrowFile(mem_.get()), co));
        // Data in three regions, each mapped by its own L2 table.
        auto img = Open();
        ASSERT_NE(img, nullptr);
        for (uint64_t r : {kRegionA, kRegionB, kRegionC}) {
            auto p = Pattern(4 * kCluster, static_cast<uint8_t>(r >> 20));
            ASSERT_OK(img->Write(r, p.data(), p.size()));
        }
        ASSERT_OK(img->Close());
    }

    // Opens the image through the gate, with cold caches.
    std::unique_ptr<qcow2::Image> Open() {
        auto gate = std::make_unique<GateFile>(mem_.get());
        gate_ = gate.get();
        auto img = qcow2::Image::Open(std::move(gate), {.write = true}, nullptr);
        EXPECT_TRUE(img.ok()) << img.status().message();
        return img.ok() ? std::move(*img) : nullptr;
    }

    // While a request on another thread is held in the gate, `probe` (a request that needs no
    // File call the gate holds) must complete.
    void ExpectProgressWhileHeld(qcow2::Image& img, GateFile::Match match, std::function<Status()> held,
                                 std::function<Status()> probe) {
        gate_->Arm(std::move(match));
        Background blocked(std::move(held));
        ASSERT_TRUE(gate_->WaitEntered()) << "the request never reached the File call the test holds";
        Background other(std::move(probe));
        bool progressed = other.DoneWithin(std::chrono::duration_cast<std::chrono::milliseconds>(kPatience));
        bool still_held = !blocked.done();
        gate_->Release();
        Status other_st = other.Finish();
        Status blocked_st = blocked.Finish();
        EXPECT_TRUE(progressed) << "a request waited for another one's File call: the image lock is held across it";
        EXPECT_TRUE(still_held);
        EXPECT_TRUE(other_st.ok()) << other_st.message();
        EXPECT_TRUE(blocked_st.ok()) << blocked_st.message();
        (void)img;
    }

    std::unique_ptr<File> mem_ = NewMemFile();
    GateFile* gate_ = nullptr;
};

// A table load is a cluster-sized read; the tests' data reads are shorter.
bool IsTableRead(OpKind kind, uint64_t, uint64_t len) { return kind == OpKind::kRead && len == kCluster; }

TEST_F(Qcow2Locking, L2CacheMissDoesNotBlockReadsOfCachedRegions) {
    auto img = Open();
    ASSERT_NE(img, nullptr);
    std::vector<uint8_t> a(512), b(512);
    ASSERT_OK(img->Read(kRegionA, a.data(), a.size()));  // region A's L2 table is cached now
    ExpectProgressWhileHeld(
        *img, IsTableRead, [&] { return img->Read(kRegionB, b.data(), b.size()); },  // misses
        [&] { return img->Read(kRegionA + 512, a.data(), a.size()); });
    auto want = Pattern(4 * kCluster, kRegionB >> 20);
    EXPECT_TRUE(std::equal(b.begin(), b.end(), want.begin()));
    ASSERT_OK(img->Close());
}

TEST_F(Qcow2Locking, L2CacheMissDoesNotBlockInPlaceWritesOrStatus) {
    auto img = Open();
    ASSERT_NE(img, nullptr);
    std::vector<uint8_t> buf(512);
    ASSERT_OK(img->Read(kRegionA, buf.data(), buf.size()));
    auto p = Pattern(512, 9);
    ExpectProgressWhileHeld(
        *img, IsTableRead, [&] { return img->Read(kRegionC, buf.data(), buf.size()); },
        [&]() -> Status {
            QZNS_TRY(img->Write(kRegionA + 1024, p.data(), p.size()));  // allocated: in place
            return img->GetStatus(kRegionA, kCluster).status();
        });
    std::vector<uint8_t> back(512);
    ASSERT_OK(img->Read(kRegionA + 1024, back.data(), back.size()));
    EXPECT_EQ(back, p);
    ASSERT_OK(img->Close());
}

TEST_F(Qcow2Locking, ConcurrentMissesOfOneTableShareOneRead) {
    auto img = Open();
    ASSERT_NE(img, nullptr);
    std::vector<uint8_t> b1(512), b2(512);
    gate_->Arm(IsTableRead);
    int reads_before = gate_->table_reads;
    Background first([&] { return img->Read(kRegionB, b1.data(), b1.size()); });
    ASSERT_TRUE(gate_->WaitEntered());
    // The second reader of the same table waits for the first load instead of reading the
    // table again (two copies in flight could let an older one replace a newer one).
    Background second([&] { return img->Read(kRegionB + 512, b2.data(), b2.size()); });
    EXPECT_FALSE(second.DoneWithin(200ms));
    gate_->Release();
    ASSERT_OK(first.Finish());
    ASSERT_OK(second.Finish());
    EXPECT_EQ(gate_->table_reads - reads_before, 1);
    auto want = Pattern(4 * kCluster, kRegionB >> 20);
    EXPECT_TRUE(std::equal(b1.begin(), b1.end(), want.begin()));
    EXPECT_TRUE(std::equal(b2.begin(), b2.end(), want.begin() + 512));
    ASSERT_OK(img->Close());
}

TEST_F(Qcow2Locking, MetadataFlushDoesNotBlockReadsOrInPlaceWrites) {
    auto img = Open();
    ASSERT_NE(img, nullptr);
    std::vector<uint8_t> buf(512);
    ASSERT_OK(img->Read(kRegionA, buf.data(), buf.size()));
    // An allocating write leaves a dirty L2 table and refcount block for the flush.
    auto fresh = Pattern(kCluster, 5);
    ASSERT_OK(img->Write(kRegionA + 64 * kCluster, fresh.data(), fresh.size()));
    auto p = Pattern(512, 6);
    // Hold the flush's first metadata table write (a cluster-sized write).
    ExpectProgressWhileHeld(
        *img, [](OpKind k, uint64_t, uint64_t len) { return k == OpKind::kWrite && len == kCluster; },
        [&] { return img->Flush(); },
        [&]() -> Status {
            std::vector<uint8_t> r(512);
            QZNS_TRY(img->Read(kRegionA, r.data(), r.size()));
            return img->Write(kRegionA + 2048, p.data(), p.size());
        });
    // And its syncs.
    ASSERT_OK(img->Write(kRegionA + 65 * kCluster, fresh.data(), fresh.size()));
    ExpectProgressWhileHeld(
        *img, [](OpKind k, uint64_t, uint64_t) { return k == OpKind::kSync; }, [&] { return img->Flush(); },
        [&]() -> Status {
            std::vector<uint8_t> r(512);
            return img->Read(kRegionA + 64 * kCluster, r.data(), r.size());
        });
    ASSERT_OK(img->Close());

    // Everything written is there and the image checks clean.
    auto again = qcow2::Image::Open(BorrowFile(mem_.get()), {.write = true}, nullptr);
    ASSERT_TRUE(again.ok()) << again.status().message();
    std::vector<uint8_t> r(kCluster);
    ASSERT_OK((*again)->Read(kRegionA + 64 * kCluster, r.data(), r.size()));
    EXPECT_EQ(r, fresh);
    ASSERT_OK((*again)->Read(kRegionA + 2048, r.data(), 512));
    EXPECT_TRUE(std::equal(p.begin(), p.end(), r.begin()));
    auto res = (*again)->Check(qcow2::RepairMode::kNone);
    ASSERT_TRUE(res.ok()) << res.status().message();
    EXPECT_EQ(res->corruptions, 0u);
    EXPECT_EQ(res->leaks, 0u);
    ASSERT_OK((*again)->Close());
}

TEST_F(Qcow2Locking, RefcountBlockMissDuringAllocationDoesNotBlockReads) {
    // A write that allocates must look up refcounts; with cold caches the refcount block is a
    // cluster-sized read like an L2 table. Either one held: the cached read still completes.
    auto img = Open();
    ASSERT_NE(img, nullptr);
    std::vector<uint8_t> buf(512);
    ASSERT_OK(img->Read(kRegionA, buf.data(), buf.size()));
    auto fresh = Pattern(kCluster, 8);
    ExpectProgressWhileHeld(
        *img, IsTableRead, [&] { return img->Write(kRegionA + 100 * kCluster, fresh.data(), fresh.size()); },
        [&] { return img->Read(kRegionA + 512, buf.data(), buf.size()); });
    std::vector<uint8_t> back(kCluster);
    ASSERT_OK(img->Read(kRegionA + 100 * kCluster, back.data(), back.size()));
    EXPECT_EQ(back, fresh);
    ASSERT_OK(img->Close());
}

// Growing the refcount table happens inside an allocating write, which holds mu_ while it
// decides; the new table must then be written later, not there. 512-byte clusters with 64-bit
// refcounts make one refcount block cover 64 clusters, so a short run of allocating writes
// outgrows the first table. The write that grows it is held at its first File call: a read
// of data already cached must still complete.
uint64_t HeaderReftableOffset(File& f) {
    uint8_t raw[8];
    EXPECT_TRUE(f.Pread(raw, sizeof(raw), 48).ok());  // QCowHeader.refcount_table_offset
    uint64_t v = 0;
    for (uint8_t b : raw) v = v << 8 | b;
    return v;
}

TEST(Qcow2LockingGrowth, RefcountTableGrowthDoesNoIoUnderTheLock) {
    constexpr uint32_t kSmall = 512;
    qcow2::CreateOptions co;
    co.size = 64 << 20;
    co.cluster_size = kSmall;
    co.refcount_bits = 64;
    auto open = [](File* f) {
        auto img = qcow2::Image::Open(BorrowFile(f), {.write = true}, nullptr);
        EXPECT_TRUE(img.ok()) << img.status().message();
        return img.ok() ? std::move(*img) : nullptr;
    };
    auto cluster = [](uint64_t i) { return Pattern(kSmall, static_cast<uint8_t>(i)); };
    // Which write grows the table (seen by the header moving after its flush)? The same
    // sequence on a fresh image then reaches the same point.
    uint64_t grows_at = 0;
    {
        auto f = NewMemFile();
        ASSERT_OK(qcow2::Create(BorrowFile(f.get()), co));
        auto img = open(f.get());
        ASSERT_NE(img, nullptr);
        uint64_t first = HeaderReftableOffset(*f);
        for (uint64_t i = 0; i < 20000 && !grows_at; i++) {
            auto p = cluster(i);
            ASSERT_OK(img->Write(i * kSmall, p.data(), p.size()));
            ASSERT_OK(img->Flush());
            if (HeaderReftableOffset(*f) != first) grows_at = i;
        }
        ASSERT_NE(grows_at, 0u) << "the refcount table never grew";
        ASSERT_OK(img->Close());
    }
    auto mem = NewMemFile();
    ASSERT_OK(qcow2::Create(BorrowFile(mem.get()), co));
    uint64_t first = HeaderReftableOffset(*mem);
    auto gate_owned = std::make_unique<GateFile>(mem.get());
    GateFile* gate = gate_owned.get();
    auto opened = qcow2::Image::Open(std::move(gate_owned), {.write = true}, nullptr);
    ASSERT_TRUE(opened.ok()) << opened.status().message();
    auto& img = *opened;
    for (uint64_t i = 0; i < grows_at; i++) {
        auto p = cluster(i);
        ASSERT_OK(img->Write(i * kSmall, p.data(), p.size()));
        ASSERT_OK(img->Flush());
    }
    ASSERT_EQ(HeaderReftableOffset(*mem), first);
    std::vector<uint8_t> back(kSmall);
    ASSERT_OK(img->Read(0, back.data(), back.size()));  // cached from here on

    gate->Arm([](OpKind k, uint64_t, uint64_t) { return k != OpKind::kRead; });
    auto p = cluster(grows_at);
    Background grower([&] { return img->Write(grows_at * kSmall, p.data(), p.size()); });
    ASSERT_TRUE(gate->WaitEntered()) << "the growing write made no File call";
    Background reader([&] { return img->Read(0, back.data(), back.size()); });
    bool progressed = reader.DoneWithin(std::chrono::duration_cast<std::chrono::milliseconds>(kPatience));
    gate->Release();
    ASSERT_OK(reader.Finish());
    ASSERT_OK(grower.Finish());
    EXPECT_TRUE(progressed) << "a read waited for the refcount table growth's I/O: the image lock is held across it";
    EXPECT_EQ(back, cluster(0));

    // The header moves with the flush, and the image is whole afterwards.
    EXPECT_EQ(HeaderReftableOffset(*mem), first) << "the header moved before a flush";
    ASSERT_OK(img->Flush());
    EXPECT_NE(HeaderReftableOffset(*mem), first);
    ASSERT_OK(img->Close());
    auto again = open(mem.get());
    ASSERT_NE(again, nullptr);
    for (uint64_t i = 0; i <= grows_at; i++) {
        ASSERT_OK(again->Read(i * kSmall, back.data(), back.size()));
        ASSERT_EQ(back, cluster(i)) << "cluster " << i;
    }
    auto res = again->Check(qcow2::RepairMode::kNone);
    ASSERT_TRUE(res.ok()) << res.status().message();
    EXPECT_EQ(res->corruptions, 0u);
    EXPECT_EQ(res->leaks, 0u);
    ASSERT_OK(again->Close());
}

}  // namespace
}  // namespace qzns
