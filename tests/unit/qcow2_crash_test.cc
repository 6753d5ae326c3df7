// Crash consistency of the qcow2 engine: a seeded workload of writes, zeroing, discards, zone
// word updates and flushes runs on a FaultFile, is cut after N mutating file operations, and
// the medium is left as a power cut could leave it (unsynced operations dropped, a random subset
// kept, or sectors torn). The crashed image must open, `check` must find no corruption (leaks
// are allowed) and everything flushed before the cut and not touched after it must read back.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "block/file-fault.h"
#include "block/qcow2/qcow2.h"
#include "block/zoned/zone-word.h"

namespace qzns::qcow2 {
namespace {

struct Config {
    const char* name;
    uint32_t cluster_size;
    uint32_t refcount_bits;
    uint64_t size;
    bool zoned;
    int ops;
    uint64_t max_len;  // longest write
    bool reftable_grows = false;  // the workload must outgrow the initial refcount table
};

struct Op {
    enum Kind { kWrite, kZero, kDiscard, kFlush, kZoneWords } kind;
    uint64_t off = 0;
    uint64_t len = 0;
    uint64_t seed = 0;
    bool unmap = false;
};

constexpr uint64_t kZoneSize = 1 << 20;

std::vector<Op> MakeWorkload(const Config& c, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<Op> ops;
    uint32_t nr_zones = static_cast<uint32_t>(c.size / kZoneSize);
    for (int i = 0; i < c.ops; i++) {
        Op op;
        int k = static_cast<int>(rng() % 16);
        op.kind = k < 8 ? Op::kWrite : k < 10 ? Op::kZero : k < 12 ? Op::kDiscard : k < 14 ? Op::kFlush
                                                                                         : Op::kZoneWords;
        if (op.kind == Op::kZoneWords && !c.zoned) op.kind = Op::kWrite;
        if (op.kind == Op::kZoneWords) {
            op.off = 1 + rng() % (nr_zones - 1);  // zone 0 is conventional
            op.len = 1 + rng() % std::min<uint64_t>(4, nr_zones - op.off);
        } else {
            // Locality: half the operations hit the first few clusters, which makes in-place
            // overwrites, copy-on-write and freeing of recently used clusters common.
            uint64_t span = rng() % 2 ? 8ull * c.cluster_size : c.size;
            op.len = 1 + rng() % c.max_len;
            if (rng() % 2) op.len = (op.len + 511) & ~uint64_t{511};
            op.len = std::min(op.len, c.size);
            op.off = rng() % (std::min(span, c.size - op.len) + 1);
            if (rng() % 2) op.off &= ~uint64_t{511};
        }
        op.seed = rng();
        op.unmap = rng() % 2;
        ops.push_back(op);
    }
    ops.push_back(Op{Op::kFlush});
    return ops;
}

void FillData(uint64_t seed, std::vector<uint8_t>& buf) {
    for (size_t i = 0; i < buf.size(); i++) buf[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 9) + 1) | 1;
}

uint64_t ZoneWordFor(uint64_t seed, uint32_t zone) {
    uint64_t zs = kZoneSize / 512, start = uint64_t{zone} * zs;
    switch (seed % 4) {
    case 0: return ZoneWord::Make(ZoneState::kEmpty, ZoneType::kSeqWriteRequired, 0, start).raw;
    case 1: return ZoneWord::Make(ZoneState::kFull, ZoneType::kSeqWriteRequired, 0, start + zs).raw;
    case 2: return ZoneWord::Make(ZoneState::kClosed, ZoneType::kSeqWriteRequired, 0, start + 1 + seed % (zs - 1)).raw;
    default: return ZoneWord::Make(ZoneState::kImplicitOpen, ZoneType::kSeqWriteRequired, 0, start + 8).raw;
    }
}

// What the guest may read after a crash. `cur` follows every successful operation; `dur` is
// `cur` at the last successful flush. A byte is `loose` when something touched it after that
// flush (or a failed operation touched it): then it is not checked.
struct Model {
    std::vector<uint8_t> cur, cur_mz, dur, dur_mz, loose;
    std::vector<uint64_t> zw_cur, zw_dur;
    std::vector<uint8_t> zw_loose;
    std::vector<uint8_t> failed;  // touched by a failed operation and not rewritten since
    std::vector<uint8_t> zw_failed;

    Model(uint64_t size, uint32_t nr_zones)
        : cur(size), cur_mz(size), dur(size), dur_mz(size), loose(size), failed(size) {
        for (uint32_t z = 0; z < nr_zones; z++) {
            uint64_t start = z * (kZoneSize / 512);
            zw_cur.push_back(z == 0 ? ZoneWord::Make(ZoneState::kNotWritePointer, ZoneType::kConventional, 0, start).raw
                                    : ZoneWord::Make(ZoneState::kEmpty, ZoneType::kSeqWriteRequired, 0, start).raw);
        }
        zw_dur = zw_cur;
        zw_loose.assign(nr_zones, 0);
        zw_failed.assign(nr_zones, 0);
    }
    void Flushed() {
        dur = cur;
        dur_mz = cur_mz;
        zw_dur = zw_cur;
        loose = failed;
        zw_loose = zw_failed;
    }
};

struct RunResult {
    std::unique_ptr<Image> img;  // still open: the crash must hit a live engine
    bool opened = false;
    int failures = 0;
};

// Runs the workload; stops at the first failure when stop_on_error (a crash cut), else carries
// on (error injection) and marks what failed operations touched as unknown.
RunResult RunWorkload(File* file, const std::vector<Op>& ops, Model& m, bool stop_on_error) {
    RunResult r;
    Image::OpenFlags fl;
    fl.write = true;
    auto opened = Image::Open(BorrowFile(file), fl, nullptr);
    if (!opened.ok()) return r;
    r.img = std::move(*opened);
    r.opened = true;
    Image& img = *r.img;
    std::vector<uint8_t> buf;
    for (const Op& op : ops) {
        Status st;
        if (op.kind == Op::kFlush) {
            st = img.Flush();
            if (st.ok()) m.Flushed();
        } else if (op.kind == Op::kZoneWords) {
            std::vector<uint64_t> words(op.len);
            for (uint64_t i = 0; i < op.len; i++) words[i] = ZoneWordFor(op.seed + i, static_cast<uint32_t>(op.off + i));
            std::memset(&m.zw_loose[op.off], 1, op.len);
            st = img.WriteZoneWords(static_cast<uint32_t>(op.off), static_cast<uint32_t>(op.len), words.data());
            if (st.ok()) {
                std::copy(words.begin(), words.end(), m.zw_cur.begin() + op.off);
                std::memset(&m.zw_failed[op.off], 0, op.len);
            } else {
                std::memset(&m.zw_failed[op.off], 1, op.len);
            }
        } else {
            std::memset(&m.loose[op.off], 1, op.len);
            if (op.kind == Op::kWrite) {
                buf.resize(op.len);
                FillData(op.seed, buf);
                st = img.Write(op.off, buf.data(), op.len);
                if (st.ok()) std::memcpy(&m.cur[op.off], buf.data(), op.len);
            } else if (op.kind == Op::kZero) {
                st = img.WriteZeroes(op.off, op.len, op.unmap);
                if (st.ok()) std::memset(&m.cur[op.off], 0, op.len);
            } else {
                st = img.Discard(op.off, op.len);
            }
            if (st.ok()) {
                std::memset(&m.cur_mz[op.off], op.kind == Op::kDiscard ? 1 : 0, op.len);
                // A discard does not make earlier failed writes certain; writes do.
                if (op.kind != Op::kDiscard) std::memset(&m.failed[op.off], 0, op.len);
            } else {
                std::memset(&m.failed[op.off], 1, op.len);
            }
        }
        if (!st.ok()) {
            r.failures++;
            if (stop_on_error) break;
        }
    }
    return r;
}

std::string Messages(const CheckResult& r) {
    std::string s;
    for (const auto& m : r.messages) s += "  " + m + "\n";
    return s;
}

// The checks on a crashed medium.
void VerifyCrashed(std::unique_ptr<File> disk, const Config& c, const Model& m, const std::string& ctx) {
    SCOPED_TRACE(ctx);
    {
        Image::OpenFlags ro;
        auto img = Image::Open(BorrowFile(disk.get()), ro, nullptr);
        ASSERT_TRUE(img.ok()) << "crashed image does not open: " << img.status().message();
        auto chk = (*img)->Check(RepairMode::kNone);
        ASSERT_TRUE(chk.ok()) << chk.status().message();
        ASSERT_EQ(chk->corruptions, 0u) << Messages(*chk);
        std::vector<uint8_t> got(c.size);
        ASSERT_TRUE((*img)->Read(0, got.data(), got.size()).ok());
        for (uint64_t i = 0; i < c.size; i++) {
            if (m.loose[i] || got[i] == m.dur[i] || (m.dur_mz[i] && got[i] == 0)) continue;
            FAIL() << "flushed byte " << i << " reads " << int(got[i]) << ", flushed value " << int(m.dur[i]);
        }
        if (c.zoned) {
            std::vector<uint64_t> words(m.zw_dur.size());
            ASSERT_TRUE((*img)->ReadZoneWords(0, static_cast<uint32_t>(words.size()), words.data()).ok());
            for (size_t z = 0; z < words.size(); z++) {
                if (m.zw_loose[z]) continue;
                ASSERT_EQ(words[z], m.zw_dur[z]) << "flushed zone word " << z;
            }
        }
    }
    // A writer takes over: leaks repaired, then clean and usable.
    Image::OpenFlags rw;
    rw.write = true;
    auto img = Image::Open(BorrowFile(disk.get()), rw, nullptr);
    ASSERT_TRUE(img.ok()) << "crashed image does not open for writing: " << img.status().message();
    auto rep = (*img)->Check(RepairMode::kLeaks);
    ASSERT_TRUE(rep.ok()) << rep.status().message();
    auto chk = (*img)->Check(RepairMode::kNone);
    ASSERT_TRUE(chk.ok());
    ASSERT_EQ(chk->corruptions + chk->leaks, 0u) << Messages(*chk);
    std::vector<uint8_t> buf(c.cluster_size + 100, 0x3c);
    ASSERT_TRUE((*img)->Write(c.size / 3, buf.data(), buf.size()).ok());
    ASSERT_TRUE((*img)->Close().ok());
}

std::unique_ptr<File> CopyOf(File& src) {
    auto out = NewMemFile();
    auto size = src.Size();
    EXPECT_TRUE(size.ok());
    std::vector<uint8_t> all(size.ok() ? *size : 0);
    EXPECT_TRUE(src.Pread(all.data(), all.size(), 0).ok());
    EXPECT_TRUE(out->Pwrite(all.data(), all.size(), 0).ok());
    return out;
}

std::unique_ptr<File> FreshImage(const Config& c) {
    auto mem = NewMemFile();
    CreateOptions co;
    co.size = c.size;
    co.cluster_size = c.cluster_size;
    co.refcount_bits = c.refcount_bits;
    if (c.zoned) {
        ZonedGeometry g;
        g.zone_size = kZoneSize;
        g.nr_conv_zones = 1;
        g.zd_extension_size = 64;
        co.zoned = g;
    }
    Status st = Create(BorrowFile(mem.get()), co);
    EXPECT_TRUE(st.ok()) << st.message();
    return mem;
}

uint64_t MutatingOps(const FaultFileStats& s) { return s.writes + s.syncs + s.truncates + s.punch_holes; }

class Qcow2Crash : public ::testing::TestWithParam<Config> {};

TEST_P(Qcow2Crash, EveryCutPointLeavesAConsistentImage) {
    const Config& c = GetParam();
    auto base = FreshImage(c);
    uint32_t nr_zones = c.zoned ? static_cast<uint32_t>(c.size / kZoneSize) : 0;
    constexpr int kSeeds = 3;
    constexpr uint64_t kCutsPerSeed = 70;
    int crashes_checked = 0;
    for (int seed = 0; seed < kSeeds; seed++) {
        auto ops = MakeWorkload(c, 1000 + seed);
        // A clean run counts the mutating file operations the workload makes.
        uint64_t total;
        {
            auto ff = NewFaultFile(CopyOf(*base));
            Model m(c.size, nr_zones);
            RunResult r = RunWorkload(ff.get(), ops, m, true);
            ASSERT_TRUE(r.opened);
            ASSERT_EQ(r.failures, 0);
            total = MutatingOps(ff->stats());
            Header h;
            ASSERT_TRUE(ff->Pread(&h, sizeof(h), 0).ok());
            if (c.reftable_grows) {
                ASSERT_GT(h.refcount_table_clusters.get(), 1u) << "workload too small";
            }

        }
        ASSERT_GT(total, 10u);
        for (uint64_t k = 0; k < kCutsPerSeed; k++) {
            uint64_t cut = k * (total + 1) / kCutsPerSeed;
            auto mode = static_cast<CrashMode>((k + seed) % 3);
            auto ff = NewFaultFile(CopyOf(*base));
            ff->SetCrashPoint(cut);
            Model m(c.size, nr_zones);
            RunResult r = RunWorkload(ff.get(), ops, m, true);
            ASSERT_TRUE(ff->SimulateCrash(mode, seed * 7919 + k).ok());
            r.img.reset();  // the dead engine's teardown cannot reach the medium
            auto disk = ff->CloneDurable();
            ASSERT_TRUE(disk.ok());
            if (c.zoned && r.opened) {
                // The in-use flag was made durable when the writer opened the image.
                Image::OpenFlags ro;
                auto probe = Image::Open(BorrowFile(disk->get()), ro, nullptr);
                ASSERT_TRUE(probe.ok());
                EXPECT_FALSE((*probe)->zoned_clean_at_open()) << "cut " << cut;
            }
            ASSERT_NO_FATAL_FAILURE(VerifyCrashed(std::move(*disk), c, m,
                                                  std::string(c.name) + " seed " + std::to_string(seed) +
                                                      " cut " + std::to_string(cut) + "/" + std::to_string(total) +
                                                      " mode " + std::to_string(static_cast<int>(mode))));
            crashes_checked++;
        }
    }
    EXPECT_EQ(crashes_checked, kSeeds * static_cast<int>(kCutsPerSeed));
}

// Random EIO on writes and syncs while the workload carries on; then a clean flush and a crash.
TEST_P(Qcow2Crash, RandomIoErrorsNeverCorrupt) {
    const Config& c = GetParam();
    auto base = FreshImage(c);
    uint32_t nr_zones = c.zoned ? static_cast<uint32_t>(c.size / kZoneSize) : 0;
    int total_failures = 0;
    for (uint64_t seed = 0; seed < 40; seed++) {
        auto ops = MakeWorkload(c, 5000 + seed);
        auto ff = NewFaultFile(CopyOf(*base));
        Model m(c.size, nr_zones);
        ff->FailRandomly(12, seed, EIO, OpKind::kWrite | OpKind::kSync | OpKind::kPunchHole);
        RunResult r = RunWorkload(ff.get(), ops, m, false);
        if (!r.opened) continue;
        total_failures += r.failures;
        ff->ClearFaults();
        if (!r.img->read_only() && r.img->Flush().ok()) m.Flushed();
        ASSERT_TRUE(ff->SimulateCrash(CrashMode::kTearSectors, seed).ok());
        r.img.reset();
        auto disk = ff->CloneDurable();
        ASSERT_TRUE(disk.ok());
        ASSERT_NO_FATAL_FAILURE(
            VerifyCrashed(std::move(*disk), c, m, std::string(c.name) + " error seed " + std::to_string(seed)));
    }
    EXPECT_GT(total_failures, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, Qcow2Crash,
    ::testing::Values(
        Config{"small_clusters", 512, 16, 1 << 20, false, 80, 3000},
        Config{"one_bit_refcounts", 4096, 1, 1 << 20, false, 80, 20000},
        // 64-bit refcounts and 512-byte clusters: the refcount table grows during the workload.
        Config{"reftable_growth", 512, 64, 4 << 20, false, 30, 400000, true},
        Config{"zoned", 65536, 16, 4 << 20, true, 60, 100000}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace qzns::qcow2
