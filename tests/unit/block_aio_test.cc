// The asynchronous block interface (block/aio/, BlockBackend::Submit): both file engines move
// whole ranges and report errors by name; many sequential writes and appends to one zone in
// flight at once are decided in submission order; reads past the wp are zeros; flushes that
// arrive while one runs are served by one more flush, not one each.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "block/aio/aio.h"
#include "block/block-backend.h"
#include "block/file.h"
#include "block/qcow2/qcow2.h"
#include "util/mutex.h"

namespace qzns {
namespace {

constexpr uint64_t kK = 1024;

// Counts completions of FileIos or BlkRequests; Wait returns when n have completed.
class Latch {
public:
    void Add() {
        util::MutexLock lk(mu_);
        n_++;
        cv_.NotifyAll();
    }
    void Wait(int n) {
        util::MutexLock lk(mu_);
        while (n_ < n) cv_.Wait(mu_);
    }

private:
    util::Mutex mu_;
    util::CondVar cv_;
    int n_ GUARDED_BY(mu_) = 0;
};

struct TempPath {
    std::string path;
    TempPath() {
        char tmpl[] = "/tmp/qzns-aio-XXXXXX";
        int fd = mkstemp(tmpl);
        EXPECT_GE(fd, 0);
        close(fd);
        path = tmpl;
    }
    ~TempPath() { unlink(path.c_str()); }
};

std::vector<uint8_t> Pattern(uint64_t len, uint8_t seed) {
    std::vector<uint8_t> v(len);
    for (uint64_t i = 0; i < len; i++) v[i] = static_cast<uint8_t>(seed * 29 + i * 13 + (i >> 9));
    return v;
}

struct Io {
    FileIo io;
    Status st;
    Latch* latch = nullptr;
};

void IoDone(FileIo* f, Status st) {
    auto* io = static_cast<Io*>(f->opaque);
    io->st = std::move(st);
    io->latch->Add();
}

// io_uring may be disabled (kernel.io_uring_disabled, seccomp): then `auto` uses threads and
// the io_uring cases have nothing to test.
bool Unavailable(AioMode m) { return m == AioMode::kIoUring && !NewUringEngine().ok(); }
#define SKIP_IF_UNAVAILABLE(m) \
    if (Unavailable(m)) GTEST_SKIP() << "io_uring is not available here: " << NewUringEngine().status().message()

class EngineTest : public ::testing::TestWithParam<AioMode> {};

TEST_P(EngineTest, MovesWholeRangesZeroFillsPastEofAndNamesErrors) {
    SKIP_IF_UNAVAILABLE(GetParam());
    TempPath tp;
    auto f = OpenPosixFile(tp.path, {.write = true, .lock = false, .aio = GetParam()});
    ASSERT_TRUE(f.ok()) << f.status().message();
    EXPECT_EQ((*f)->aio_mode(), GetParam());
    constexpr int kN = 64;
    std::vector<std::vector<uint8_t>> data;
    std::vector<Io> ios(kN);
    Latch latch;
    for (int i = 0; i < kN; i++) data.push_back(Pattern(16 * kK, static_cast<uint8_t>(i)));
    for (int i = 0; i < kN; i++) {
        ios[i].latch = &latch;
        ios[i].io.op = FileIo::Op::kWrite;
        ios[i].io.buf = data[i].data();
        ios[i].io.len = 16 * kK;
        ios[i].io.off = i * 16 * kK;
        ios[i].io.opaque = &ios[i];
        ios[i].io.done = IoDone;
        (*f)->Submit(&ios[i].io);
    }
    latch.Wait(kN);
    for (auto& io : ios) ASSERT_TRUE(io.st.ok()) << io.st.message();
    Io sync;
    Latch sl;
    sync.latch = &sl;
    sync.io.op = FileIo::Op::kSync;
    sync.io.opaque = &sync;
    sync.io.done = IoDone;
    (*f)->Submit(&sync.io);
    sl.Wait(1);
    ASSERT_TRUE(sync.st.ok()) << sync.st.message();

    // One read across the end of the file: the part past EOF reads as zeros.
    uint64_t end = kN * 16 * kK;
    std::vector<uint8_t> buf(32 * kK, 0xee);
    Io rd;
    Latch rl;
    rd.latch = &rl;
    rd.io.op = FileIo::Op::kRead;
    rd.io.buf = buf.data();
    rd.io.len = buf.size();
    rd.io.off = end - 16 * kK;
    rd.io.opaque = &rd;
    rd.io.done = IoDone;
    (*f)->Submit(&rd.io);
    rl.Wait(1);
    ASSERT_TRUE(rd.st.ok()) << rd.st.message();
    EXPECT_EQ(0, std::memcmp(buf.data(), data[kN - 1].data(), 16 * kK));
    EXPECT_EQ(std::vector<uint8_t>(16 * kK, 0), std::vector<uint8_t>(buf.begin() + 16 * kK, buf.end()));

    // An engine reports a failed call with the file's name and the system's reason.
    auto eng = NewIoEngine(GetParam());
    ASSERT_TRUE(eng.ok()) << eng.status().message();
    Io bad;
    Latch bl;
    std::string name = "bad-file";
    bad.latch = &bl;
    bad.io.op = FileIo::Op::kRead;
    bad.io.buf = buf.data();
    bad.io.len = 512;
    bad.io.fd = -1;
    bad.io.file_name = &name;
    bad.io.opaque = &bad;
    bad.io.done = IoDone;
    (*eng)->Submit(&bad.io);
    bl.Wait(1);
    EXPECT_EQ(bad.st.err(), EBADF);
    EXPECT_NE(bad.st.message().find("read bad-file"), std::string::npos) << bad.st.message();
}

INSTANTIATE_TEST_SUITE_P(Engines, EngineTest, ::testing::Values(AioMode::kThreads, AioMode::kIoUring),
                         [](const auto& info) { return std::string(info.param == AioMode::kIoUring ? "io_uring" : "threads"); });

TEST(AioMode, Parses) {
    EXPECT_EQ(*ParseAioMode("io_uring"), AioMode::kIoUring);
    EXPECT_EQ(*ParseAioMode("threads"), AioMode::kThreads);
    auto bad = ParseAioMode("uring");
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.status().message().find("io_uring, threads"), std::string::npos);
}

// ---- the backend ----

constexpr uint64_t kZone = 1024 * kK;
constexpr uint32_t kZones = 8;

std::unique_ptr<BlockBackend> ZonedDisk(const std::string& path, AioMode aio) {
    qcow2::CreateOptions co;
    co.size = kZones * kZone;
    co.cluster_size = 64 * kK;
    qcow2::ZonedGeometry g;
    g.zone_size = kZone;
    g.zone_capacity = kZone;
    g.nr_conv_zones = 1;
    g.max_append_bytes = 64 * kK;
    co.zoned = g;
    auto f = OpenPosixFile(path, {.write = true, .create = true, .lock = false});
    EXPECT_TRUE(f.ok());
    Status st = qcow2::Create(std::move(*f), co);
    EXPECT_TRUE(st.ok()) << st.message();
    BlockBackendOptions bo;
    bo.filename = path;
    bo.lock = false;
    bo.aio = aio;
    auto be = BlockBackend::Open(bo);
    EXPECT_TRUE(be.ok()) << be.status().message();
    return be.ok() ? std::move(*be) : nullptr;
}

struct Req {
    BlkRequest r;
    Latch* latch;
};

void ReqDone(BlkRequest* r) { static_cast<Req*>(r->opaque)->latch->Add(); }

Req* Prepare(std::vector<Req>& v, size_t i, Latch* l, BlkOp op, uint64_t off, void* buf, uint64_t len) {
    Req& q = v[i];
    q.r = BlkRequest{};
    q.r.op = op;
    q.r.off = off;
    q.r.buf = buf;
    q.r.len = len;
    q.r.done = ReqDone;
    q.r.opaque = &q;
    q.latch = l;
    return &q;
}

class BackendTest : public ::testing::TestWithParam<AioMode> {};

TEST_P(BackendTest, SequentialWritesInFlightAreDecidedInSubmissionOrder) {
    SKIP_IF_UNAVAILABLE(GetParam());
    TempPath tp;
    auto be = ZonedDisk(tp.path, GetParam());
    ASSERT_TRUE(be);
    EXPECT_EQ(be->aio_mode(), GetParam());
    constexpr int kN = 32;
    constexpr uint64_t kLen = 8 * kK;
    uint64_t zs = 2 * kZone;  // zone 2
    // The zone's first write maps its extent (blocking path); the rest go straight to the engine.
    std::vector<std::vector<uint8_t>> data;
    for (int i = 0; i < kN; i++) data.push_back(Pattern(kLen, static_cast<uint8_t>(i + 1)));
    std::vector<Req> reqs(kN);
    Latch l;
    for (int i = 0; i < kN; i++) be->Submit(&Prepare(reqs, i, &l, BlkOp::kWrite, zs + i * kLen, data[i].data(), kLen)->r);
    l.Wait(kN);
    for (auto& q : reqs) ASSERT_TRUE(q.r.result.ok()) << q.r.result.message();
    auto zi = be->GetZone(2);
    ASSERT_TRUE(zi.ok());
    EXPECT_EQ(zi->wp, zs + kN * kLen);

    // Async reads, one of them across the wp: data, then zeros.
    std::vector<std::vector<uint8_t>> out(kN + 1, std::vector<uint8_t>(kLen, 0xcc));
    std::vector<Req> rd(kN + 1);
    Latch rl;
    for (int i = 0; i <= kN; i++) be->Submit(&Prepare(rd, i, &rl, BlkOp::kRead, zs + i * kLen, out[i].data(), kLen)->r);
    rl.Wait(kN + 1);
    for (int i = 0; i < kN; i++) {
        ASSERT_TRUE(rd[i].r.result.ok()) << rd[i].r.result.message();
        EXPECT_EQ(out[i], data[i]) << "request " << i;
    }
    EXPECT_EQ(out[kN], std::vector<uint8_t>(kLen, 0));

    // A write that is not at the wp fails through the callback with the zone error.
    std::vector<Req> badv(1);
    Latch bl;
    be->Submit(&Prepare(badv, 0, &bl, BlkOp::kWrite, zs, data[0].data(), kLen)->r);
    bl.Wait(1);
    EXPECT_EQ(badv[0].r.result.zone_error, ZoneError::kZoneInvalidWrite);
    EXPECT_TRUE(be->Close().ok());
}

TEST_P(BackendTest, AppendsInFlightGetDistinctOffsetsAndKeepTheirData) {
    SKIP_IF_UNAVAILABLE(GetParam());
    TempPath tp;
    auto be = ZonedDisk(tp.path, GetParam());
    ASSERT_TRUE(be);
    constexpr int kN = 48;  // 48 x 16 KiB + 4 KiB fit the 1 MiB zone
    constexpr uint64_t kLen = 16 * kK;
    uint64_t zs = 3 * kZone;
    // One ordinary write first, so the extent exists and every append takes the engine path.
    std::vector<uint8_t> first = Pattern(4 * kK, 0);
    ASSERT_TRUE(be->Write(zs, first.data(), first.size(), false).ok());
    std::vector<std::vector<uint8_t>> data;
    for (int i = 0; i < kN; i++) data.push_back(Pattern(kLen, static_cast<uint8_t>(100 + i)));
    std::vector<Req> reqs(kN);
    Latch l;
    for (int i = 0; i < kN; i++) {
        Req* q = Prepare(reqs, i, &l, BlkOp::kAppend, zs, data[i].data(), kLen);
        q->r.fua = i % 8 == 0;  // some wait for a flush before they complete
        be->Submit(&q->r);
    }
    l.Wait(kN);
    std::set<uint64_t> offs;
    for (int i = 0; i < kN; i++) {
        ASSERT_TRUE(reqs[i].r.result.ok()) << reqs[i].r.result.message();
        uint64_t v = reqs[i].r.result.value;
        EXPECT_EQ((v - zs - first.size()) % kLen, 0u);
        offs.insert(v);
        std::vector<uint8_t> back(kLen);
        ASSERT_TRUE(be->Read(v, back.data(), kLen).ok());
        EXPECT_EQ(back, data[i]) << "append " << i << " at " << v;
    }
    EXPECT_EQ(offs.size(), size_t{kN});
    EXPECT_EQ(*offs.begin(), zs + first.size());
    EXPECT_EQ(*offs.rbegin(), zs + first.size() + (kN - 1) * kLen);
    EXPECT_TRUE(be->Close().ok());
}

INSTANTIATE_TEST_SUITE_P(Engines, BackendTest, ::testing::Values(AioMode::kThreads, AioMode::kIoUring, AioMode::kSync),
                         [](const auto& info) { return std::string(AioModeName(info.param)); });

// A memory file that counts syncs and can hold the next one until released.
class SyncGateFile final : public File {
public:
    explicit SyncGateFile(File* inner) : inner_(inner) {}
    Status Pread(void* b, uint64_t l, uint64_t o) override { return inner_->Pread(b, l, o); }
    Status Pwrite(const void* b, uint64_t l, uint64_t o) override { return inner_->Pwrite(b, l, o); }
    Status Sync() override {
        util::MutexLock lk(mu_);
        syncs_++;
        if (hold_) {
            held_ = true;
            cv_.NotifyAll();
            while (hold_) cv_.Wait(mu_);
        }
        return inner_->Sync();
    }
    Result<uint64_t> Size() override { return inner_->Size(); }
    Status Truncate(uint64_t s) override { return inner_->Truncate(s); }
    Status PunchHole(uint64_t o, uint64_t l) override { return inner_->PunchHole(o, l); }
    Result<uint64_t> AllocatedBytes() override { return inner_->AllocatedBytes(); }
    const std::string& name() const override { return inner_->name(); }

    int syncs() {
        util::MutexLock lk(mu_);
        return syncs_;
    }
    void Hold() {
        util::MutexLock lk(mu_);
        hold_ = true;
        held_ = false;
    }
    void WaitHeld() {
        util::MutexLock lk(mu_);
        while (!held_) cv_.Wait(mu_);
    }
    void Release() {
        util::MutexLock lk(mu_);
        hold_ = false;
        cv_.NotifyAll();
    }

private:
    File* inner_;
    util::Mutex mu_;
    util::CondVar cv_;
    int syncs_ GUARDED_BY(mu_) = 0;
    bool hold_ GUARDED_BY(mu_) = false, held_ GUARDED_BY(mu_) = false;
};

TEST(GroupedFlush, FlushesQueuedBehindARunningFlushShareOne) {
    auto mem = NewMemFile();
    auto gate_owned = std::make_unique<SyncGateFile>(mem.get());
    SyncGateFile* gate = gate_owned.get();
    qcow2::CreateOptions co;
    co.size = kZones * kZone;
    co.cluster_size = 64 * kK;
    qcow2::ZonedGeometry g;
    g.zone_size = kZone;
    g.zone_capacity = kZone;
    co.zoned = g;
    ASSERT_TRUE(qcow2::Create(std::make_unique<SyncGateFile>(mem.get()), co).ok());
    auto img = qcow2::Image::Open(std::move(gate_owned), {.write = true}, nullptr);
    ASSERT_TRUE(img.ok()) << img.status().message();
    auto be = BlockBackend::OpenDriver(std::move(*img));
    ASSERT_TRUE(be.ok()) << be.status().message();
    std::vector<uint8_t> data = Pattern(4 * kK, 7);

    // What one flush after a write costs.
    ASSERT_TRUE((*be)->Write(0, data.data(), data.size(), false).ok());
    int s0 = gate->syncs();
    ASSERT_TRUE((*be)->Flush().ok());
    int per_flush = gate->syncs() - s0;
    ASSERT_GE(per_flush, 1);

    // A flush is held inside its first sync; meanwhile writes dirty zone words and ten more
    // flushes arrive. They must be served by one flush after it, not ten.
    ASSERT_TRUE((*be)->Write(4 * kK, data.data(), data.size(), false).ok());
    ASSERT_TRUE((*be)->Write(2 * kZone, data.data(), data.size(), false).ok());  // maps zone 2
    gate->Hold();
    s0 = gate->syncs();
    std::thread first([&] { EXPECT_TRUE((*be)->Flush().ok()); });
    gate->WaitHeld();
    // Into zone 2's extent: no metadata, so not behind the held flush.
    ASSERT_TRUE((*be)->Write(2 * kZone + data.size(), data.data(), data.size(), false).ok());
    constexpr int kN = 10;
    std::vector<Req> reqs(kN);
    Latch l;
    for (int i = 0; i < kN; i++) (*be)->Submit(&Prepare(reqs, i, &l, BlkOp::kFlush, 0, nullptr, 0)->r);
    gate->Release();
    first.join();
    l.Wait(kN);
    for (auto& q : reqs) EXPECT_TRUE(q.r.result.ok()) << q.r.result.message();
    EXPECT_LE(gate->syncs() - s0, 2 * per_flush) << "one flush per queued request, not grouped";
    // And the grouped flush made the later write's zone word durable.
    auto zi = (*be)->GetZone(2);
    ASSERT_TRUE(zi.ok());
    EXPECT_EQ(zi->wp, 2 * kZone + 2 * data.size());
    ASSERT_TRUE((*be)->Close().ok());
    auto again = qcow2::Image::Open(std::make_unique<SyncGateFile>(mem.get()), {.write = false}, nullptr);
    ASSERT_TRUE(again.ok());
    auto be2 = BlockBackend::OpenDriver(std::move(*again));
    ASSERT_TRUE(be2.ok());
    EXPECT_EQ((*be2)->GetZone(2)->wp, 2 * kZone + 2 * data.size());
}

}  // namespace
}  // namespace qzns

namespace qzns {
namespace {

// Recovery asks the host file (SEEK_DATA) whether a linear extent holds anything past the wp
// instead of punching every open zone; what an unflushed write left there must still go.
TEST(Recovery, UnflushedDataPastTheWpIsErasedFromTheHostFile) {
    TempPath tp;
    constexpr uint64_t kLen = 8 * kK;
    std::vector<uint8_t> a = Pattern(kLen, 1), b = Pattern(kLen, 2);
    SKIP_IF_UNAVAILABLE(AioMode::kIoUring);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        // The writer dies without closing: only the first write's wp is durable.
        auto be = ZonedDisk(tp.path, AioMode::kIoUring);
        bool ok = be && be->Write(4 * kZone, a.data(), kLen, false).ok() &&
                  be->Write(4 * kZone + kLen, b.data(), kLen, false).ok() &&
                  be->Write(2 * kZone, a.data(), kLen, false).ok() && be->Flush().ok() &&
                  be->Write(2 * kZone + kLen, b.data(), kLen, false).ok();
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    auto host_of = [&](uint64_t guest) -> uint64_t {
        auto f = OpenPosixFile(tp.path, {.lock = false});
        auto img = qcow2::Image::Open(std::move(*f), {.write = false}, nullptr);
        EXPECT_TRUE(img.ok());
        auto e = (*img)->L2EntryFor(guest);
        EXPECT_TRUE(e.ok());
        return e.ok() ? (*e & qcow2::kL2OffsetMask) : 0;
    };
    uint64_t h2 = host_of(2 * kZone), h4 = host_of(4 * kZone);
    ASSERT_NE(h2, 0u);
    ASSERT_NE(h4, 0u);
    auto host_bytes = [&](uint64_t host) {
        std::vector<uint8_t> v(kLen);
        auto f = OpenPosixFile(tp.path, {.lock = false});
        EXPECT_TRUE((*f)->Pread(v.data(), kLen, host).ok());
        return v;
    };
    ASSERT_EQ(host_bytes(h2 + kLen), b);  // the unflushed write reached the file
    {
        BlockBackendOptions bo;
        bo.filename = tp.path;
        bo.lock = false;
        auto be = BlockBackend::Open(bo);  // recovery
        ASSERT_TRUE(be.ok()) << be.status().message();
        EXPECT_EQ((*be)->GetZone(2)->wp, 2 * kZone + kLen);
        EXPECT_EQ((*be)->GetZone(4)->wp, 4 * kZone + 2 * kLen);
        ASSERT_TRUE((*be)->Close().ok());
    }
    EXPECT_EQ(host_bytes(h2 + kLen), std::vector<uint8_t>(kLen, 0)) << "data past the wp survived recovery";
    EXPECT_EQ(host_bytes(h2), a);
    EXPECT_EQ(host_bytes(h4 + kLen), b);  // durable: kept
}

}  // namespace
}  // namespace qzns

namespace qzns {
namespace {

// A plain qcow2 image: reads and rewrites of mapped clusters take the engine path
// (TrySubmitMapped), allocating writes and holes the blocking one; both give the same bytes.
TEST_P(BackendTest, PlainImageMixesEnginePathAndBlockingPath) {
    SKIP_IF_UNAVAILABLE(GetParam());
    TempPath tp;
    {
        qcow2::CreateOptions co;
        co.size = 16 << 20;
        auto f = OpenPosixFile(tp.path, {.write = true, .create = true, .lock = false});
        ASSERT_TRUE(f.ok());
        ASSERT_TRUE(qcow2::Create(std::move(*f), co).ok());
    }
    BlockBackendOptions bo;
    bo.filename = tp.path;
    bo.lock = false;
    bo.aio = GetParam();
    auto be = BlockBackend::Open(bo);
    ASSERT_TRUE(be.ok()) << be.status().message();
    constexpr int kN = 32;
    constexpr uint64_t kLen = 64 * kK;
    for (int round = 0; round < 2; round++) {  // 0: allocating, 1: rewrites of mapped clusters
        std::vector<std::vector<uint8_t>> data;
        for (int i = 0; i < kN; i++) data.push_back(Pattern(kLen, static_cast<uint8_t>(round * 50 + i)));
        std::vector<Req> w(kN);
        Latch wl;
        for (int i = 0; i < kN; i++) (*be)->Submit(&Prepare(w, i, &wl, BlkOp::kWrite, i * kLen, data[i].data(), kLen)->r);
        wl.Wait(kN);
        for (auto& q : w) ASSERT_TRUE(q.r.result.ok()) << q.r.result.message();
        std::vector<std::vector<uint8_t>> out(kN + 1, std::vector<uint8_t>(kLen, 0xcc));
        std::vector<Req> rd(kN + 1);
        Latch rl;
        for (int i = 0; i <= kN; i++) (*be)->Submit(&Prepare(rd, i, &rl, BlkOp::kRead, i * kLen, out[i].data(), kLen)->r);
        rl.Wait(kN + 1);
        for (int i = 0; i < kN; i++) {
            ASSERT_TRUE(rd[i].r.result.ok()) << rd[i].r.result.message();
            EXPECT_EQ(out[i], data[i]) << "round " << round << " request " << i;
        }
        EXPECT_EQ(out[kN], std::vector<uint8_t>(kLen, 0));  // never written: a hole
    }
    ASSERT_TRUE((*be)->Close().ok());
    auto f = OpenPosixFile(tp.path, {.lock = false});
    auto img = qcow2::Image::Open(std::move(*f), {.write = false}, nullptr);
    ASSERT_TRUE(img.ok());
    auto cr = (*img)->Check(qcow2::RepairMode::kNone);
    ASSERT_TRUE(cr.ok());
    EXPECT_EQ(cr->corruptions + cr->leaks, 0u);
}

}  // namespace
}  // namespace qzns
