// PRP and SGL walkers against guest memory a test builds: random valid layouts must give back
// exactly the pages/blocks the test chose; malformed ones must give the right NVMe status and
// never read outside guest memory or loop.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "hw/vfio-user/nvme-dptr.h"

namespace qzns::vfu {
namespace {

using namespace dptr_sc;

// Guest memory [0, size) in a vector; counts accesses.
class VectorDma : public DmaSpace {
public:
    explicit VectorDma(size_t size) : mem(size, 0) {}
    Status Read(uint64_t iova, void* buf, size_t len) override {
        reads++;
        if (iova > mem.size() || len > mem.size() - iova) return Status::Error(EFAULT, "oob");
        std::memcpy(buf, mem.data() + iova, len);
        return Status::Ok();
    }
    Status Write(uint64_t iova, const void* buf, size_t len) override {
        if (iova > mem.size() || len > mem.size() - iova) return Status::Error(EFAULT, "oob");
        std::memcpy(mem.data() + iova, buf, len);
        return Status::Ok();
    }
    uint8_t* Translate(uint64_t, size_t, bool) override { return nullptr; }
    void Put64(uint64_t at, uint64_t v) { std::memcpy(mem.data() + at, &v, 8); }
    void PutSgl(uint64_t at, uint64_t addr, uint32_t len, uint8_t type) {
        SglDescriptor d{};
        d.addr.set(addr);
        d.length.set(len);
        d.sgl_identifier = uint8_t(type << 4);
        std::memcpy(mem.data() + at, &d, 16);
    }
    std::vector<uint8_t> mem;
    int reads = 0;
};

SglDescriptor Sgl(uint64_t addr, uint32_t len, uint8_t type) {
    SglDescriptor d{};
    d.addr.set(addr);
    d.length.set(len);
    d.sgl_identifier = uint8_t(type << 4);
    return d;
}

std::vector<DmaSegment> Merge(const std::vector<DmaSegment>& in) {
    std::vector<DmaSegment> out;
    for (auto s : in) {
        if (!out.empty() && out.back().bit_bucket == s.bit_bucket &&
            (s.bit_bucket || out.back().addr + out.back().len == s.addr))
            out.back().len += s.len;
        else out.push_back(s);
    }
    return out;
}

constexpr uint32_t kPage = 4096;

// A walk into storage of `capacity` segments, copied out for comparison.
struct Walked {
    uint16_t status;
    std::vector<DmaSegment> segments;
    bool ok() const { return status == kSuccess; }
};
Walked PrpWalk(DmaSpace& dma, uint64_t prp1, uint64_t prp2, uint64_t len, uint32_t page,
               size_t capacity = 4096) {
    std::vector<DmaSegment> storage(capacity);
    DmaSegmentList out(storage);
    Walked w{WalkPrp(dma, prp1, prp2, len, page, out), {}};
    w.segments.assign(out.begin(), out.end());
    return w;
}
Walked SglWalk(DmaSpace& dma, const SglDescriptor& sgl1, uint64_t len, bool to_guest,
               uint32_t max_descriptors = 4096, size_t capacity = 4096) {
    std::vector<DmaSegment> storage(capacity);
    DmaSegmentList out(storage);
    Walked w{WalkSgl(dma, sgl1, len, to_guest, out, max_descriptors), {}};
    w.segments.assign(out.begin(), out.end());
    return w;
}

TEST(Prp, SinglePageAndTwoPages) {
    VectorDma dma(1 << 20);
    auto w = PrpWalk(dma, 0x1010, 0, 100, kPage);
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(w.segments, (std::vector<DmaSegment>{{0x1010, 100}}));
    w = PrpWalk(dma, 0x1800, 0x5000, 4096, kPage);
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(w.segments, (std::vector<DmaSegment>{{0x1800, 0x800}, {0x5000, 0x800}}));
    EXPECT_EQ(dma.reads, 0) << "no list for two pages";
}

TEST(Prp, OffsetsAreChecked) {
    VectorDma dma(1 << 20);
    EXPECT_EQ(PrpWalk(dma, 0x1002, 0, 8, kPage).status, kPrpOffsetInvalid);
    EXPECT_EQ(PrpWalk(dma, 0x1000, 0x2100, 8192, kPage).status, kPrpOffsetInvalid);
    dma.Put64(0x3000, 0x7000);
    dma.Put64(0x3008, 0x8010);  // data entry with an offset
    EXPECT_EQ(PrpWalk(dma, 0x1000, 0x3000, 3 * kPage, kPage).status, kPrpOffsetInvalid);
    EXPECT_EQ(PrpWalk(dma, 0x1000, 0x3004, 3 * kPage, kPage).status, kPrpOffsetInvalid);
    EXPECT_EQ(PrpWalk(dma, 0x1000, 0, 0, kPage).status, kInvalidField);
}

TEST(Prp, ListOutsideGuestMemoryIsDataTransferError) {
    VectorDma dma(1 << 20);
    EXPECT_EQ(PrpWalk(dma, 0x1000, 0x10000000, 5 * kPage, kPage).status, kDataTransferError);
}

TEST(Prp, ChainedListLoopIsBoundedByLength) {
    VectorDma dma(1 << 20);
    // A list page whose last entry points to itself: the walk ends when the length is used up.
    for (int i = 0; i < 511; i++) dma.Put64(0x3000 + 8 * i, 0x10000 + uint64_t(i) * kPage);
    dma.Put64(0x3000 + 8 * 511, 0x3000);
    auto w = PrpWalk(dma, 0x1000, 0x3000, 2000ull * kPage, kPage);
    ASSERT_TRUE(w.ok());
    uint64_t total = 0;
    for (auto& s : w.segments) total += s.len;
    EXPECT_EQ(total, 2000ull * kPage);
    EXPECT_LE(dma.reads, 5);
}

TEST(Prp, RandomLayoutsRoundTrip) {
    std::mt19937_64 rng(42);
    const uint64_t mem_size = 64 << 20;
    VectorDma dma(mem_size);  // reused: the walker reads only the list entries written below
    for (int iter = 0; iter < 500; iter++) {
        uint32_t page = kPage << (rng() % 3);  // 4K, 8K, 16K
        uint64_t pages_in_mem = mem_size / page;
        uint64_t len = 1 + rng() % (2 << 20);
        uint64_t off = (rng() % (page / 4)) * 4;
        uint64_t prp1 = (1 + rng() % (pages_in_mem - 1)) * page + off;
        std::vector<DmaSegment> want;
        uint64_t first = std::min<uint64_t>(len, page - off);
        want.push_back({prp1, first});
        uint64_t left = len - first;
        std::vector<uint64_t> data_pages;
        while (left > 0) {
            uint64_t n = std::min<uint64_t>(left, page);
            uint64_t p = (rng() % 4 == 0 && !want.empty() && want.back().addr % page == 0)
                             ? want.back().addr + page  // sometimes contiguous
                             : (1 + rng() % (pages_in_mem - 1)) * page;
            if (p >= mem_size) p = page;
            data_pages.push_back(p);
            want.push_back({p, n});
            left -= n;
        }
        uint64_t prp2 = 0;
        if (data_pages.size() == 1) {
            prp2 = data_pages[0];
        } else if (data_pages.size() > 1) {
            // Lay the list out over chained list pages in a reserved area, with a random
            // starting offset in the first page.
            uint64_t list_area = 0;  // page 0 and pages right after are list pages
            uint64_t start_off = (rng() % (page / 8)) * 8;
            uint64_t at = list_area + start_off;
            prp2 = at;
            uint64_t next_list = list_area + page;
            for (size_t i = 0; i < data_pages.size(); i++) {
                bool last_slot = (at % page) == page - 8;
                if (last_slot && i + 1 < data_pages.size() + 0 && data_pages.size() - i > 1) {
                    dma.Put64(at, next_list);
                    at = next_list;
                    next_list += page;
                }
                dma.Put64(at, data_pages[i]);
                at += 8;
            }
            // The list pages overlap guest data pages in this test; that is fine for walking.
        }
        auto w = PrpWalk(dma, prp1, prp2, len, page);
        ASSERT_TRUE(w.ok()) << "iter " << iter << " status " << w.status;
        ASSERT_EQ(w.segments, Merge(want)) << "iter " << iter;
    }
}

TEST(Sgl, DataBlockInCommand) {
    VectorDma dma(1 << 20);
    auto w = SglWalk(dma, Sgl(0x1234, 100, kSglTypeDataBlock), 100, false);
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(w.segments, (std::vector<DmaSegment>{{0x1234, 100}}));
    EXPECT_EQ(SglWalk(dma, Sgl(0x1234, 99, kSglTypeDataBlock), 100, false).status,
              kDataSglLengthInvalid);
    EXPECT_EQ(SglWalk(dma, Sgl(0, 100, kSglTypeBitBucket), 100, false).status,
              kSglDescriptorTypeInvalid) << "bit bucket only for reads";
    EXPECT_EQ(SglWalk(dma, Sgl(0, 100, 0x5), 100, false).status, kSglDescriptorTypeInvalid);
}

TEST(Sgl, SegmentsChainAndLastSegmentEnds) {
    VectorDma dma(1 << 20);
    dma.PutSgl(0x1000, 0x10000, 512, kSglTypeDataBlock);
    dma.PutSgl(0x1010, 0x2000, 32, kSglTypeLastSegment);
    dma.PutSgl(0x2000, 0x20000, 256, kSglTypeDataBlock);
    dma.PutSgl(0x2010, 0, 256, kSglTypeBitBucket);
    auto w = SglWalk(dma, Sgl(0x1000, 32, kSglTypeSegment), 1024, true);
    ASSERT_TRUE(w.ok()) << w.status;
    EXPECT_EQ(w.segments, (std::vector<DmaSegment>{{0x10000, 512}, {0x20000, 256}, {0, 256, true}}));
    // A Last Segment that chains again is invalid.
    dma.PutSgl(0x2010, 0x3000, 16, kSglTypeSegment);
    EXPECT_EQ(SglWalk(dma, Sgl(0x1000, 32, kSglTypeSegment), 1024, true).status,
              kInvalidSglSegmentDescriptor);
    // Segment length not a multiple of 16, zero, or misaligned address.
    EXPECT_EQ(SglWalk(dma, Sgl(0x1000, 24, kSglTypeSegment), 8, true).status,
              kInvalidSglSegmentDescriptor);
    EXPECT_EQ(SglWalk(dma, Sgl(0x1000, 0, kSglTypeSegment), 8, true).status,
              kInvalidSglSegmentDescriptor);
    EXPECT_EQ(SglWalk(dma, Sgl(0x1001, 16, kSglTypeSegment), 8, true).status, kSglOffsetInvalid);
    EXPECT_EQ(SglWalk(dma, Sgl(0xfffff0, 16, kSglTypeSegment), 8, true).status, kDataTransferError);
}

TEST(Sgl, SelfLoopIsBoundedByDescriptorLimit) {
    VectorDma dma(1 << 20);
    dma.PutSgl(0x1000, 0x10000, 0, kSglTypeDataBlock);  // zero-length data keeps "need" > 0
    dma.PutSgl(0x1010, 0x1000, 32, kSglTypeSegment);    // points back to itself
    auto w = SglWalk(dma, Sgl(0x1000, 32, kSglTypeSegment), 4096, false, 1000);
    EXPECT_EQ(w.status, kInvalidNumberOfSglDescriptors);
    EXPECT_LE(dma.reads, 501);
}

TEST(Sgl, RandomChainsRoundTrip) {
    std::mt19937_64 rng(7);
    for (int iter = 0; iter < 500; iter++) {
        VectorDma dma(16 << 20);
        bool to_guest = rng() % 2;
        std::vector<DmaSegment> want;
        uint64_t total = 0;
        // Build k segments of random descriptor counts in the first MiB, data above it.
        int nseg = 1 + int(rng() % 5);
        uint64_t seg_at = 0x1000;
        SglDescriptor first = Sgl(seg_at, 0, nseg == 1 ? kSglTypeLastSegment : kSglTypeSegment);
        for (int s = 0; s < nseg; s++) {
            int ndata = 1 + int(rng() % 6);
            bool last = s == nseg - 1;
            uint32_t nd = uint32_t(ndata + (last ? 0 : 1));
            if (s == 0) first.length.set(nd * 16);
            uint64_t at = seg_at;
            for (int d = 0; d < ndata; d++) {
                uint32_t len = 1 + uint32_t(rng() % 20000);
                if (to_guest && rng() % 5 == 0) {
                    dma.PutSgl(at, 0, len, kSglTypeBitBucket);
                    want.push_back({0, len, true});
                } else {
                    uint64_t addr = (1 << 20) + rng() % (14 << 20);
                    dma.PutSgl(at, addr, len, kSglTypeDataBlock);
                    want.push_back({addr, len});
                }
                total += len;
                at += 16;
            }
            if (!last) {
                uint64_t next = seg_at + 0x1000;
                int next_n = 0;  // filled when the next segment is built; patch below
                (void)next_n;
                dma.PutSgl(at, next, 0, s + 1 == nseg - 1 ? kSglTypeLastSegment : kSglTypeSegment);
                seg_at = next;
            }
        }
        // Patch the chain descriptors' lengths now that all segments exist: walk the layout.
        seg_at = 0x1000;
        for (int s = 0; s + 1 < nseg; s++) {
            uint64_t at = seg_at;
            while ((dma.mem[at + 15] >> 4) != kSglTypeSegment && (dma.mem[at + 15] >> 4) != kSglTypeLastSegment)
                at += 16;
            uint64_t next = seg_at + 0x1000;
            uint32_t n = 0;
            for (uint64_t p = next; p < next + 0x1000; p += 16) {
                uint8_t t = dma.mem[p + 15] >> 4;
                bool used = false;
                for (int b = 0; b < 16; b++) used |= dma.mem[p + b] != 0;
                if (!used) break;
                n++;
                if (t == kSglTypeSegment || t == kSglTypeLastSegment) break;
            }
            SglDescriptor d;
            std::memcpy(&d, dma.mem.data() + at, 16);
            d.length.set(n * 16);
            std::memcpy(dma.mem.data() + at, &d, 16);
            seg_at = next;
        }
        // Ask for a random prefix of the described length.
        uint64_t len = 1 + rng() % total;
        std::vector<DmaSegment> want_prefix;
        uint64_t need = len;
        for (auto s : want) {
            if (need == 0) break;
            s.len = std::min(s.len, need);
            need -= s.len;
            want_prefix.push_back(s);
        }
        auto w = SglWalk(dma, first, len, to_guest);
        ASSERT_TRUE(w.ok()) << "iter " << iter << " status " << w.status;
        ASSERT_EQ(w.segments, Merge(want_prefix)) << "iter " << iter;
        // Asking for more than described fails.
        EXPECT_EQ(SglWalk(dma, first, total + 1, to_guest).status, kDataSglLengthInvalid);
    }
}

TEST(Copy, ToAndFromGuestSkipsBitBuckets) {
    VectorDma dma(1 << 20);
    std::vector<DmaSegment> segs = {{0x100, 3}, {0, 2, true}, {0x200, 3}};
    EXPECT_EQ(CopyToGuest(dma, segs, "abcdefgh", 8), kSuccess);
    EXPECT_EQ(std::memcmp(dma.mem.data() + 0x100, "abc", 3), 0);
    EXPECT_EQ(std::memcmp(dma.mem.data() + 0x200, "fgh", 3), 0);
    char buf[8];
    EXPECT_EQ(CopyFromGuest(dma, segs, buf, 8), kDataTransferError) << "bit bucket on a write";
    std::vector<DmaSegment> one = {{0x100, 3}}, outside = {{0xffffff, 3}};
    EXPECT_EQ(CopyFromGuest(dma, one, buf, 3), kSuccess);
    EXPECT_EQ(CopyFromGuest(dma, outside, buf, 3), kDataTransferError);
}

// The segment storage is fixed (a request slot's, sized for MDTS): a transfer scattered over
// more pieces fails with a status instead of growing it. Contiguous pieces merge and fit.
TEST(Capacity, MoreSegmentsThanTheStorageHoldsFailTheWalk) {
    VectorDma dma(1 << 20);
    for (int i = 0; i < 4; i++) dma.Put64(0x3000 + 8 * i, 0x10000 + uint64_t(i) * 2 * kPage);  // scattered
    EXPECT_TRUE(PrpWalk(dma, 0x1000, 0x3000, 5 * kPage, kPage, 5).ok());
    EXPECT_EQ(PrpWalk(dma, 0x1000, 0x3000, 5 * kPage, kPage, 4).status, kDataTransferError);
    EXPECT_EQ(PrpWalk(dma, 0x1800, 0x5000, kPage, kPage, 1).status, kDataTransferError);
    for (int i = 0; i < 4; i++) dma.Put64(0x3000 + 8 * i, 0x10000 + uint64_t(i) * kPage);  // contiguous
    auto w = PrpWalk(dma, 0x10000 - kPage, 0x3000, 5 * kPage, kPage, 1);
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(w.segments, (std::vector<DmaSegment>{{0x10000 - kPage, 5 * kPage}}));

    dma.PutSgl(0x1000, 0x10000, 512, kSglTypeDataBlock);
    dma.PutSgl(0x1010, 0x20000, 512, kSglTypeDataBlock);
    dma.PutSgl(0x1020, 0x30000, 512, kSglTypeDataBlock);
    EXPECT_TRUE(SglWalk(dma, Sgl(0x1000, 48, kSglTypeLastSegment), 1536, false, 4096, 3).ok());
    EXPECT_EQ(SglWalk(dma, Sgl(0x1000, 48, kSglTypeLastSegment), 1536, false, 4096, 2).status,
              kInvalidNumberOfSglDescriptors);
}

// A PRP list page and an SGL segment bigger than the walkers' stack chunk are read in pieces
// with the same result.
TEST(Chunks, LargeListPagesAndSegmentsAreReadInPieces) {
    VectorDma dma(8 << 20);
    const uint32_t page = 16 * kPage;  // 2048 entries per list page
    for (int i = 0; i < 1500; i++) dma.Put64(0x100000 + 8 * i, 0x200000 + uint64_t(i) * 2 * page);
    auto w = PrpWalk(dma, 0x10000, 0x100000, 1501ull * page, page);
    ASSERT_TRUE(w.ok()) << w.status;
    ASSERT_EQ(w.segments.size(), 1501u);
    EXPECT_EQ(w.segments[1000], (DmaSegment{0x200000 + 999ull * 2 * page, page}));
    for (int i = 0; i < 600; i++) dma.PutSgl(0x10000 + 16 * i, 0x400000 + uint64_t(i) * 32, 16, kSglTypeDataBlock);
    auto s = SglWalk(dma, Sgl(0x10000, 600 * 16, kSglTypeLastSegment), 600 * 16, false);
    ASSERT_TRUE(s.ok()) << s.status;
    ASSERT_EQ(s.segments.size(), 600u);
    EXPECT_EQ(s.segments[599], (DmaSegment{0x400000 + 599 * 32, 16}));
}

}  // namespace
}  // namespace qzns::vfu
