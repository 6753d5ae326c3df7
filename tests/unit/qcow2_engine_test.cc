// The qcow2 engine on in-memory and posix files: every cluster size and refcount width against a
// shadow model, refcount table growth, reuse of freed clusters, discard, zero clusters, partial
// writes (copy-on-write from zeros and from a backing image) and the corrupt bit.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "block/file-fault.h"
#include "block/qcow2/qcow2.h"
#include "util/endian.h"

namespace qzns::qcow2 {
namespace {

#define ASSERT_OK(expr)                                          \
    do {                                                         \
        ::qzns::Status st_ = (expr);                             \
        ASSERT_TRUE(st_.ok()) << #expr << ": " << st_.message(); \
    } while (0)

std::unique_ptr<Image> OpenOn(File* f, bool write, std::unique_ptr<BlockDriver> backing = nullptr,
                              bool check_mode = false) {
    Image::OpenFlags fl;
    fl.write = write;
    fl.check_mode = check_mode;
    auto r = Image::Open(BorrowFile(f), fl, std::move(backing));
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? std::move(*r) : nullptr;
}

void ExpectClean(Image& img) {
    auto r = img.Check(RepairMode::kNone);
    ASSERT_TRUE(r.ok()) << r.status().message();
    std::string msgs;
    for (const auto& m : r->messages) msgs += m + "\n";
    EXPECT_EQ(r->corruptions, 0u) << msgs;
    EXPECT_EQ(r->leaks, 0u) << msgs;
}

// What the guest must read: the bytes last written; after a discard each byte may also read 0.
struct Shadow {
    std::vector<uint8_t> data;
    std::vector<uint8_t> maybe_zero;
    explicit Shadow(uint64_t size) : data(size, 0), maybe_zero(size, 0) {}
    void Write(uint64_t off, const uint8_t* buf, uint64_t len) {
        std::memcpy(&data[off], buf, len);
        std::memset(&maybe_zero[off], 0, len);
    }
    void Zero(uint64_t off, uint64_t len) {
        std::memset(&data[off], 0, len);
        std::memset(&maybe_zero[off], 0, len);
    }
    void Discard(uint64_t off, uint64_t len) { std::memset(&maybe_zero[off], 1, len); }
};

// Returns the first offset that differs from the model, or -1.
int64_t FirstMismatch(const Shadow& s, const std::vector<uint8_t>& got) {
    for (size_t i = 0; i < got.size(); i++) {
        if (got[i] == s.data[i]) continue;
        if (s.maybe_zero[i] && got[i] == 0) continue;
        return static_cast<int64_t>(i);
    }
    return -1;
}

void ExpectMatches(Image& img, const Shadow& s, const std::string& when) {
    std::vector<uint8_t> got(s.data.size());
    ASSERT_OK(img.Read(0, got.data(), got.size()));
    int64_t bad = FirstMismatch(s, got);
    ASSERT_EQ(bad, -1) << when << ": byte " << bad << " reads " << int(got[bad]) << ", expected "
                       << int(s.data[bad]);
    // Whatever GetStatus calls zero must read as zeros; runs must tile the disk.
    for (uint64_t pos = 0; pos < img.size();) {
        auto bs = img.GetStatus(pos, img.size() - pos);
        ASSERT_TRUE(bs.ok()) << bs.status().message();
        ASSERT_GT(bs->bytes, 0u);
        if (bs->zero) {
            for (uint64_t i = pos; i < pos + bs->bytes; i++) ASSERT_EQ(got[i], 0) << when << " at " << i;
        }
        pos += bs->bytes;
    }
}

void Fill(std::vector<uint8_t>& buf, std::mt19937_64& rng) {
    uint8_t base = static_cast<uint8_t>(rng() | 1);  // never all zeros
    for (size_t i = 0; i < buf.size(); i++) buf[i] = static_cast<uint8_t>(base + i * 7 + (i >> 9));
}

// ---- every cluster size x every refcount width ----

class Qcow2Matrix : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(Qcow2Matrix, RandomOpsMatchShadowAndCheckClean) {
    auto [cluster_bits, order] = GetParam();
    uint64_t cs = 1ull << cluster_bits;
    uint64_t size = std::max<uint64_t>(1 << 20, 6 * cs);
    auto mem = NewMemFile();
    CreateOptions co;
    co.size = size;
    co.cluster_size = static_cast<uint32_t>(cs);
    co.refcount_bits = 1u << order;
    ASSERT_OK(Create(BorrowFile(mem.get()), co));

    auto img = OpenOn(mem.get(), true);
    ASSERT_TRUE(img);
    ASSERT_EQ(img->info().refcount_bits, 1u << order);
    ExpectClean(*img);
    Shadow shadow(size);
    std::mt19937_64 rng(cluster_bits * 100 + order);
    std::vector<uint8_t> buf;
    auto rand_range = [&](uint64_t max_len) {
        uint64_t len = 1 + rng() % max_len;
        if (rng() % 3 == 0) len = (len + 511) / 512 * 512;  // mostly sector-sized, some odd
        len = std::min(len, size);
        uint64_t off = rng() % (size - len + 1);
        if (rng() % 2) off &= ~uint64_t{511};
        return std::pair<uint64_t, uint64_t>(off, len);
    };
    for (int op = 0; op < 60; op++) {
        int kind = static_cast<int>(rng() % 10);
        auto [off, len] = rand_range(3 * cs);
        if (kind < 5) {
            buf.resize(len);
            Fill(buf, rng);
            ASSERT_OK(img->Write(off, buf.data(), len));
            shadow.Write(off, buf.data(), len);
        } else if (kind < 7) {
            bool unmap = rng() % 2;
            ASSERT_OK(img->WriteZeroes(off, len, unmap));
            shadow.Zero(off, len);
        } else if (kind < 9) {
            ASSERT_OK(img->Discard(off, len));
            shadow.Discard(off, len);
        } else {
            ASSERT_OK(img->Flush());
        }
        if (op % 20 == 19) {
            ASSERT_NO_FATAL_FAILURE(ExpectMatches(*img, shadow, "op " + std::to_string(op)));
            ASSERT_NO_FATAL_FAILURE(ExpectClean(*img));
        }
    }
    ASSERT_OK(img->Close());
    img = OpenOn(mem.get(), false);
    ASSERT_TRUE(img);
    ASSERT_NO_FATAL_FAILURE(ExpectMatches(*img, shadow, "after reopen"));
    ASSERT_NO_FATAL_FAILURE(ExpectClean(*img));
}

INSTANTIATE_TEST_SUITE_P(AllClusterSizesAndRefcountWidths, Qcow2Matrix,
                         ::testing::Combine(::testing::Range(9, 22), ::testing::Range(0, 7)),
                         [](const auto& info) {
                             return "cs" + std::to_string(1u << std::get<0>(info.param)) + "_rc" +
                                    std::to_string(1u << std::get<1>(info.param));
                         });

// Whole L2 tables written at once: with 64-bit refcounts a refcount block covers exactly one L2
// table's worth of clusters, and blocks made on demand sit on their first cluster, so such a run
// can never be allocated contiguously (this used to loop until the refcount table hit 8 MiB).
class Qcow2LongRuns : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(Qcow2LongRuns, WholeL2TableWritesAllocate) {
    auto [cluster_bits, order] = GetParam();
    uint64_t cs = 1ull << cluster_bits;
    uint64_t l2_span = cs * (cs / 8);
    auto mem = NewMemFile();
    CreateOptions co;
    co.size = 2 * l2_span + cs;
    co.cluster_size = static_cast<uint32_t>(cs);
    co.refcount_bits = 1u << order;
    ASSERT_OK(Create(BorrowFile(mem.get()), co));
    auto img = OpenOn(mem.get(), true);
    ASSERT_TRUE(img);
    std::vector<uint8_t> buf(2 * l2_span, 0x5a);
    ASSERT_OK(img->Write(cs, buf.data(), buf.size()));  // misaligned by one cluster, spans 3 L2s
    std::vector<uint8_t> second(l2_span, 0xa5);
    ASSERT_OK(img->Discard(0, l2_span));
    ASSERT_OK(img->Flush());
    ASSERT_OK(img->Write(0, second.data(), l2_span));  // aligned, into partly freed space
    Shadow s(co.size);
    s.Write(cs, buf.data(), buf.size());
    s.Write(0, second.data(), l2_span);
    ASSERT_NO_FATAL_FAILURE(ExpectMatches(*img, s, "after write"));
    ASSERT_NO_FATAL_FAILURE(ExpectClean(*img));
}

INSTANTIATE_TEST_SUITE_P(SmallClusters, Qcow2LongRuns,
                         ::testing::Combine(::testing::Range(9, 14), ::testing::Values(0, 4, 6)),
                         [](const auto& info) {
                             return "cs" + std::to_string(1u << std::get<0>(info.param)) + "_rc" +
                                    std::to_string(1u << std::get<1>(info.param));
                         });

// ---- refcount table growth ----

uint32_t RefcountTableClusters(File& f) {
    be32 v;
    EXPECT_TRUE(f.Pread(&v, 4, offsetof(Header, refcount_table_clusters)).ok());
    return v.get();
}

class Qcow2RefcountGrowth : public ::testing::TestWithParam<std::tuple<int, int>> {};

// 512-byte clusters fill refcount blocks quickly; writes are spread so L2 tables and data
// interleave with the new refcount blocks and tables.
TEST_P(Qcow2RefcountGrowth, TableGrowsAndStaysConsistent) {
    auto [order, want_growths] = GetParam();
    auto mem = NewMemFile();
    CreateOptions co;
    co.size = 1ull << 30;
    co.cluster_size = 512;
    co.refcount_bits = 1u << order;
    ASSERT_OK(Create(BorrowFile(mem.get()), co));
    uint32_t initial = RefcountTableClusters(*mem);
    auto img = OpenOn(mem.get(), true);
    ASSERT_TRUE(img);

    // One reftable cluster describes 64 blocks of (512 * 8 >> order) clusters: 1-bit refcounts
    // need 128 MiB of clusters before the first growth, 64-bit ones 2 MiB.
    std::vector<uint8_t> chunk(64 << 10);
    std::vector<uint64_t> written;  // guest offsets of chunks
    uint32_t growths = 0, last = initial;
    uint64_t guest = 0;
    std::mt19937_64 rng(order);
    for (int i = 0; growths < static_cast<uint32_t>(want_growths); i++) {
        ASSERT_LT(i, 100000) << "refcount table never grew";
        for (size_t j = 0; j < chunk.size(); j += 8) store_be64(&chunk[j], guest + j);
        if (i % 2) {
            ASSERT_OK(img->Write(guest, chunk.data(), chunk.size()));
        } else {
            // Cluster by cluster: single-cluster allocations also fill the holes multi-cluster
            // runs leave in front of refcount blocks made on demand.
            for (size_t j = 0; j < chunk.size(); j += 512) ASSERT_OK(img->Write(guest + j, &chunk[j], 512));
        }
        written.push_back(guest);
        guest += chunk.size() + (rng() % 4) * 512;  // gaps leave unallocated clusters
        if (guest + chunk.size() > co.size) guest = (rng() % 1024) * 512 + 7 * 512;
        if (i % 64 == 63) {
            ASSERT_OK(img->Flush());
            uint32_t now = RefcountTableClusters(*mem);
            if (now != last) {
                growths++;
                last = now;
            }
        }
    }
    EXPECT_GT(last, initial);
    ASSERT_NO_FATAL_FAILURE(ExpectClean(*img));
    ASSERT_OK(img->Close());
    img = OpenOn(mem.get(), false);
    ASSERT_TRUE(img);
    ASSERT_NO_FATAL_FAILURE(ExpectClean(*img));
    // The last chunk written at each offset wins; chunks only ever carry their own offsets, so
    // every 8-byte word in a written chunk reads back as its guest offset.
    std::vector<uint8_t> got(chunk.size());
    for (size_t k = 0; k < written.size(); k += 7) {
        ASSERT_OK(img->Read(written[k], got.data(), got.size()));
        for (size_t j = 0; j < got.size(); j += 8)
            ASSERT_EQ(load_be64(&got[j]), written[k] + j) << "chunk " << k;
    }
}

INSTANTIATE_TEST_SUITE_P(RefcountWidths, Qcow2RefcountGrowth,
                         ::testing::Values(std::make_tuple(0, 1), std::make_tuple(4, 3),
                                           std::make_tuple(6, 4)),
                         [](const auto& info) {
                             return "rc" + std::to_string(1u << std::get<0>(info.param));
                         });

// ---- freed clusters, discard, zero clusters ----

uint64_t HostOf(Image& img, uint64_t guest) {
    auto e = img.L2EntryFor(guest);
    EXPECT_TRUE(e.ok()) << e.status().message();
    return e.ok() ? (*e & kL2OffsetMask) : 0;
}

TEST(Qcow2Engine, FreedClustersAreReusedOnlyAfterFlush) {
    auto mem = NewMemFile();
    CreateOptions co;
    co.size = 16 << 20;
    co.cluster_size = 4096;
    ASSERT_OK(Create(BorrowFile(mem.get()), co));
    auto img = OpenOn(mem.get(), true);
    ASSERT_TRUE(img);
    std::vector<uint8_t> buf(4096, 0xaa);
    ASSERT_OK(img->Write(0, buf.data(), buf.size()));
    ASSERT_OK(img->Flush());
    uint64_t a = HostOf(*img, 0);
    ASSERT_NE(a, 0u);

    ASSERT_OK(img->Discard(0, 4096));
    EXPECT_EQ(HostOf(*img, 0), 0u);
    // The discard is not durable yet: a crash could still find the old L2 entry, so the
    // cluster must not carry new data until after a flush.
    ASSERT_OK(img->Write(1 << 20, buf.data(), buf.size()));
    uint64_t b = HostOf(*img, 1 << 20);
    EXPECT_NE(b, a);
    ASSERT_OK(img->Flush());
    ASSERT_OK(img->Write(2 << 20, buf.data(), buf.size()));
    EXPECT_EQ(HostOf(*img, 2 << 20), a) << "the lowest free cluster is the freed one";
    ASSERT_NO_FATAL_FAILURE(ExpectClean(*img));
}

class TmpDir {
public:
    TmpDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "qcow2-test-XXXXXX").string();
        path_ = mkdtemp(tmpl.data()) ? tmpl : "";
    }
    ~TmpDir() {
        std::error_code ec;
        if (!path_.empty()) std::filesystem::remove_all(path_, ec);
    }
    std::string file(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

std::unique_ptr<File> OpenPosix(const std::string& path, bool create) {
    FileOpenFlags fl;
    fl.write = true;
    fl.create = create;
    fl.lock = false;
    auto r = OpenPosixFile(path, fl);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? std::move(*r) : nullptr;
}

TEST(Qcow2Engine, DiscardReturnsSpaceToTheHost) {
    TmpDir dir;
    auto f = OpenPosix(dir.file("d.qcow2"), true);
    ASSERT_TRUE(f);
    CreateOptions co;
    co.size = 64 << 20;
    ASSERT_OK(Create(BorrowFile(f.get()), co));
    auto img = OpenOn(f.get(), true);
    ASSERT_TRUE(img);
    std::vector<uint8_t> buf(8 << 20, 0x77);
    ASSERT_OK(img->Write(1 << 20, buf.data(), buf.size()));
    ASSERT_OK(img->Flush());
    auto before = f->AllocatedBytes();
    ASSERT_TRUE(before.ok());
    EXPECT_GE(*before, buf.size());

    ASSERT_OK(img->Discard(1 << 20, buf.size()));
    ASSERT_OK(img->Flush());
    auto after = f->AllocatedBytes();
    ASSERT_TRUE(after.ok());
    EXPECT_LE(*after + buf.size() - (256 << 10), *before) << "discard did not punch the clusters";
    std::vector<uint8_t> got(buf.size());
    ASSERT_OK(img->Read(1 << 20, got.data(), got.size()));
    EXPECT_EQ(got, std::vector<uint8_t>(buf.size(), 0));
    ASSERT_NO_FATAL_FAILURE(ExpectClean(*img));

    // The space is reused: rewriting does not grow the file.
    ASSERT_OK(img->Write(1 << 20, buf.data(), buf.size()));
    ASSERT_OK(img->Close());
    auto size = f->Size();
    ASSERT_TRUE(size.ok());
    EXPECT_LT(*size, 2 * buf.size());
}

TEST(Qcow2Engine, ZeroClustersReadAsZerosAndKeepOrFreeTheirSpace) {
    auto mem = NewMemFile();
    CreateOptions co;
    co.size = 4 << 20;
    co.cluster_size = 65536;
    ASSERT_OK(Create(BorrowFile(mem.get()), co));
    auto img = OpenOn(mem.get(), true);
    ASSERT_TRUE(img);
    std::vector<uint8_t> buf(4 * 65536, 0xcd);
    ASSERT_OK(img->Write(0, buf.data(), buf.size()));
    uint64_t host1 = HostOf(*img, 65536);

    ASSERT_OK(img->WriteZeroes(65536, 65536, /*may_unmap=*/false));
    auto e1 = img->L2EntryFor(65536);
    ASSERT_TRUE(e1.ok());
    EXPECT_TRUE(*e1 & kOflagZero);
    EXPECT_EQ(*e1 & kL2OffsetMask, host1) << "without may_unmap the cluster stays allocated";

    ASSERT_OK(img->WriteZeroes(2 * 65536, 65536, /*may_unmap=*/true));
    auto e2 = img->L2EntryFor(2 * 65536);
    ASSERT_TRUE(e2.ok());
    EXPECT_EQ(*e2, kOflagZero) << "with may_unmap the cluster is released";

    ASSERT_OK(img->WriteZeroes(3 * 65536 + 100, 1000, true));  // partial: written as zeros
    // On an unallocated cluster too: zero clusters hide nothing but must still read zero.
    ASSERT_OK(img->WriteZeroes(20 * 65536, 2 * 65536, true));

    Shadow s(co.size);
    s.Write(0, buf.data(), buf.size());
    s.Zero(65536, 2 * 65536);
    s.Zero(3 * 65536 + 100, 1000);
    ASSERT_NO_FATAL_FAILURE(ExpectMatches(*img, s, "zeroed"));
    auto st = img->GetStatus(65536, 2 * 65536);
    ASSERT_TRUE(st.ok());
    EXPECT_TRUE(st->zero && st->allocated && !st->data);

    // Partial write into the preallocated zero cluster: the rest stays zero.
    std::vector<uint8_t> small(777, 0x11);
    ASSERT_OK(img->Write(65536 + 3000, small.data(), small.size()));
    s.Write(65536 + 3000, small.data(), small.size());
    ASSERT_OK(img->Write(2 * 65536 + 5, small.data(), small.size()));
    s.Write(2 * 65536 + 5, small.data(), small.size());
    ASSERT_NO_FATAL_FAILURE(ExpectMatches(*img, s, "rewritten"));
    ASSERT_NO_FATAL_FAILURE(ExpectClean(*img));
    ASSERT_OK(img->Close());
    img = OpenOn(mem.get(), false);
    ASSERT_TRUE(img);
    ASSERT_NO_FATAL_FAILURE(ExpectMatches(*img, s, "reopened"));
    ASSERT_NO_FATAL_FAILURE(ExpectClean(*img));
}

// ---- partial-cluster allocating writes ----

TEST(Qcow2Engine, PartialWritesKeepNeighbouringBytes) {
    for (uint32_t cs : {512u, 4096u, 65536u, 2u << 20}) {
        SCOPED_TRACE("cluster_size " + std::to_string(cs));
        auto mem = NewMemFile();
        CreateOptions co;
        co.size = 8ull * cs;
        co.cluster_size = cs;
        ASSERT_OK(Create(BorrowFile(mem.get()), co));
        auto img = OpenOn(mem.get(), true);
        ASSERT_TRUE(img);
        Shadow s(co.size);
        std::mt19937_64 rng(cs);
        std::vector<uint8_t> buf;
        // Head and tail of a cluster, then the middle, then across a boundary.
        for (auto [off, len] : {std::pair<uint64_t, uint64_t>{0, 1}, {cs - 1, 1}, {cs + cs / 3, 5},
                                {3ull * cs - 17, 40}, {5ull * cs + 511, 513}}) {
            buf.resize(len);
            Fill(buf, rng);
            ASSERT_OK(img->Write(off, buf.data(), len));
            s.Write(off, buf.data(), len);
            ASSERT_NO_FATAL_FAILURE(ExpectMatches(*img, s, "after write at " + std::to_string(off)));
        }
        ASSERT_NO_FATAL_FAILURE(ExpectClean(*img));
    }
}

TEST(Qcow2Engine, PartialWritesCopyFromTheBackingImage) {
    constexpr uint32_t kCs = 4096;
    auto base_mem = NewMemFile("base");
    CreateOptions bo;
    bo.size = 1 << 20;  // smaller than the overlay: beyond it the overlay reads zeros
    bo.cluster_size = 65536;
    ASSERT_OK(Create(BorrowFile(base_mem.get()), bo));
    std::vector<uint8_t> pattern(bo.size);
    for (size_t i = 0; i < pattern.size(); i++) pattern[i] = static_cast<uint8_t>(i * 31 + (i >> 12) + 1);
    {
        auto base = OpenOn(base_mem.get(), true);
        ASSERT_TRUE(base);
        ASSERT_OK(base->Write(0, pattern.data(), pattern.size()));
        ASSERT_OK(base->Close());
    }
    auto top_mem = NewMemFile("top");
    CreateOptions to;
    to.size = 2 << 20;
    to.cluster_size = kCs;
    to.backing_file = "base";
    to.backing_format = "qcow2";
    ASSERT_OK(Create(BorrowFile(top_mem.get()), to));

    Shadow s(to.size);
    s.Write(0, pattern.data(), pattern.size());
    auto open_top = [&](bool write) {
        auto top = OpenOn(top_mem.get(), write);
        if (top) top->AttachBacking(OpenOn(base_mem.get(), false));
        return top;
    };
    auto top = open_top(true);
    ASSERT_TRUE(top);
    EXPECT_EQ(top->info().backing_file, "base");
    ASSERT_NO_FATAL_FAILURE(ExpectMatches(*top, s, "fresh overlay"));

    std::vector<uint8_t> buf(300, 0xee);
    for (uint64_t off : std::vector<uint64_t>{10, kCs * 3 + 4000, kCs * 7 - 150, (1u << 20) - 100,
                                              (1u << 20) + 5000}) {
        ASSERT_OK(top->Write(off, buf.data(), buf.size()));
        s.Write(off, buf.data(), buf.size());
    }
    // Zeroes and discards in an overlay must hide the backing data, not reveal it.
    ASSERT_OK(top->WriteZeroes(kCs * 10, kCs * 2, true));
    s.Zero(kCs * 10, kCs * 2);
    ASSERT_OK(top->Discard(kCs * 20, kCs * 2));
    s.Zero(kCs * 20, kCs * 2);
    ASSERT_NO_FATAL_FAILURE(ExpectMatches(*top, s, "after partial writes"));
    ASSERT_NO_FATAL_FAILURE(ExpectClean(*top));
    ASSERT_OK(top->Close());
    top = open_top(false);
    ASSERT_TRUE(top);
    ASSERT_NO_FATAL_FAILURE(ExpectMatches(*top, s, "reopened"));
}

// ---- corrupt bit ----

// Rewrites the first L2 entry of guest cluster 0 directly in the file.
void PokeL2Entry(File& f, uint64_t guest_cluster, uint64_t entry) {
    Header h;
    ASSERT_OK(f.Pread(&h, sizeof(h), 0));
    uint32_t cs = 1u << h.cluster_bits.get();
    uint64_t per_l2 = cs / 8;
    be64 l1;
    ASSERT_OK(f.Pread(&l1, 8, h.l1_table_offset.get() + guest_cluster / per_l2 * 8));
    uint64_t l2 = l1.get() & kL1OffsetMask;
    ASSERT_NE(l2, 0u);
    be64 v(entry);
    ASSERT_OK(f.Pwrite(&v, 8, l2 + guest_cluster % per_l2 * 8));
}

uint64_t IncompatBits(File& f) {
    be64 v;
    EXPECT_TRUE(f.Pread(&v, 8, offsetof(Header, incompatible_features)).ok());
    return v.get();
}

class Qcow2CorruptBit : public ::testing::TestWithParam<int> {};

// An L2 entry pointing past the end of the file: reading it marks the image corrupt, writes are
// refused from then on, the bit persists, and `check -r all` clears it.
TEST_P(Qcow2CorruptBit, BadL2EntryMarksCorruptAndRefusesWrites) {
    uint64_t clusters_past_eof = static_cast<uint64_t>(GetParam());
    auto mem = NewMemFile();
    CreateOptions co;
    co.size = 4 << 20;
    co.cluster_size = 65536;
    ASSERT_OK(Create(BorrowFile(mem.get()), co));
    std::vector<uint8_t> buf(65536, 0x42);
    {
        auto img = OpenOn(mem.get(), true);
        ASSERT_TRUE(img);
        ASSERT_OK(img->Write(0, buf.data(), buf.size()));
        ASSERT_OK(img->Write(65536, buf.data(), buf.size()));
        ASSERT_OK(img->Close());
    }
    auto fsize = mem->Size();
    ASSERT_TRUE(fsize.ok());
    uint64_t eof = (*fsize + 65535) / 65536 * 65536;
    PokeL2Entry(*mem, 0, (eof + clusters_past_eof * 65536) | kOflagCopied);

    auto img = OpenOn(mem.get(), true);
    ASSERT_TRUE(img);
    std::vector<uint8_t> got(65536);
    Status rd = img->Read(0, got.data(), got.size());
    EXPECT_EQ(rd.err(), EUCLEAN) << rd.message();
    Status wr = img->Write(2 * 65536, buf.data(), buf.size());
    EXPECT_EQ(wr.err(), EUCLEAN) << "writes must be refused after MarkCorrupt: " << wr.message();
    EXPECT_TRUE(img->read_only());
    // Other clusters still read.
    ASSERT_OK(img->Read(65536, got.data(), got.size()));
    EXPECT_EQ(got, buf);
    img.reset();
    EXPECT_TRUE(IncompatBits(*mem) & kIncompatCorrupt);

    Image::OpenFlags wf;
    wf.write = true;
    auto refused = Image::Open(BorrowFile(mem.get()), wf, nullptr);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().err(), EUCLEAN);
    auto ro = OpenOn(mem.get(), false);
    ASSERT_TRUE(ro);
    EXPECT_TRUE(ro->info().corrupt);
    auto chk = ro->Check(RepairMode::kNone);
    ASSERT_TRUE(chk.ok());
    EXPECT_GT(chk->corruptions, 0u);
    ro.reset();

    auto fix = OpenOn(mem.get(), true, nullptr, /*check_mode=*/true);
    ASSERT_TRUE(fix);
    auto rep = fix->Check(RepairMode::kAll);
    ASSERT_TRUE(rep.ok()) << rep.status().message();
    EXPECT_EQ(rep->corruptions, rep->corruptions_fixed);
    ASSERT_OK(fix->Close());
    EXPECT_FALSE(IncompatBits(*mem) & kIncompatCorrupt);
    img = OpenOn(mem.get(), true);
    ASSERT_TRUE(img);
    ASSERT_NO_FATAL_FAILURE(ExpectClean(*img));
    ASSERT_OK(img->Write(0, buf.data(), buf.size()));
    ASSERT_OK(img->Read(0, got.data(), got.size()));
    EXPECT_EQ(got, buf);
}

// 0: the entry points at the first cluster past EOF, the one the next allocation would hand out.
INSTANTIATE_TEST_SUITE_P(PastEof, Qcow2CorruptBit, ::testing::Values(0, 1, 1000));

}  // namespace
}  // namespace qzns::qcow2
