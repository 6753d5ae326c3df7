// The zoned extension of the qcow2 engine: zone words and descriptor extensions persist across
// reopen and crashes, `check` finds invalid zone words and `-r all` repairs them, and a foreign
// writer (an autoclear bit cleared by a program that does not know it) forces re-validation.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "block/file-fault.h"
#include "block/qcow2/qcow2.h"
#include "block/zoned/zone-word.h"

namespace qzns::qcow2 {
namespace {

#define ASSERT_OK(expr)                                          \
    do {                                                         \
        ::qzns::Status st_ = (expr);                             \
        ASSERT_TRUE(st_.ok()) << #expr << ": " << st_.message(); \
    } while (0)

constexpr uint64_t kZoneSize = 1 << 20;
constexpr uint64_t kZoneSectors = kZoneSize / 512;
constexpr uint32_t kNrZones = 16;
constexpr uint32_t kConv = 2;
constexpr uint32_t kZdExt = 128;

std::unique_ptr<File> NewZonedImage(uint32_t cluster_size = 65536) {
    auto mem = NewMemFile();
    CreateOptions co;
    co.size = kZoneSize * kNrZones;
    co.cluster_size = cluster_size;
    ZonedGeometry g;
    g.zone_size = kZoneSize;
    g.zone_capacity = kZoneSize - 64 * 1024;
    g.nr_conv_zones = kConv;
    g.max_open_zones = 4;
    g.max_active_zones = 6;
    g.max_append_bytes = 128 * 1024;
    g.zd_extension_size = kZdExt;
    co.zoned = g;
    Status st = Create(BorrowFile(mem.get()), co);
    EXPECT_TRUE(st.ok()) << st.message();
    return mem;
}

std::unique_ptr<Image> OpenOn(File* f, bool write, bool check_mode = false) {
    Image::OpenFlags fl;
    fl.write = write;
    fl.check_mode = check_mode;
    auto r = Image::Open(BorrowFile(f), fl, nullptr);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? std::move(*r) : nullptr;
}

Result<CheckResult> CheckOf(Image& img, RepairMode mode) { return img.Check(mode); }

void ExpectClean(Image& img) {
    auto r = img.Check(RepairMode::kNone);
    ASSERT_TRUE(r.ok()) << r.status().message();
    std::string msgs;
    for (const auto& m : r->messages) msgs += m + "\n";
    EXPECT_EQ(r->corruptions, 0u) << msgs;
    EXPECT_EQ(r->leaks, 0u) << msgs;
    EXPECT_EQ(r->zone_errors, 0u) << msgs;
}

uint64_t Word(ZoneState s, uint32_t zone, uint64_t wp_off, uint8_t attrs = 0) {
    return ZoneWord::Make(s, ZoneType::kSeqWriteRequired, attrs, zone * kZoneSectors + wp_off).raw;
}

std::vector<uint64_t> ReadWords(Image& img) {
    std::vector<uint64_t> w(kNrZones);
    Status st = img.ReadZoneWords(0, kNrZones, w.data());
    EXPECT_TRUE(st.ok()) << st.message();
    return w;
}

TEST(Qcow2Zoned, CreateLaysOutValidWords) {
    auto mem = NewZonedImage();
    auto img = OpenOn(mem.get(), false);
    ASSERT_TRUE(img);
    ASSERT_TRUE(img->zoned());
    EXPECT_EQ(img->zoned()->nr_zones, kNrZones);
    EXPECT_TRUE(img->zoned_clean_at_open());
    EXPECT_FALSE(img->info().foreign_writer);
    auto w = ReadWords(*img);
    for (uint32_t z = 0; z < kNrZones; z++) {
        ZoneWord zw{w[z]};
        if (z < kConv) {
            EXPECT_EQ(zw.type(), ZoneType::kConventional) << z;
            EXPECT_EQ(zw.state(), ZoneState::kNotWritePointer) << z;
        } else {
            EXPECT_EQ(zw.state(), ZoneState::kEmpty) << z;
            EXPECT_EQ(zw.wp(), z * kZoneSectors) << z;
        }
    }
    std::vector<uint8_t> zd(kZdExt, 0xff);
    ASSERT_OK(img->ReadZded(5, zd.data()));
    EXPECT_EQ(zd, std::vector<uint8_t>(kZdExt, 0));
    ASSERT_NO_FATAL_FAILURE(ExpectClean(*img));
}

TEST(Qcow2Zoned, WordsAndDescriptorExtensionsSurviveReopen) {
    for (uint32_t cs : {512u, 4096u, 65536u, 2u << 20}) {
        SCOPED_TRACE("cluster_size " + std::to_string(cs));
        auto mem = NewZonedImage(cs);
        std::vector<uint64_t> words;
        std::vector<uint8_t> zd(kZdExt);
        {
            auto img = OpenOn(mem.get(), true);
            ASSERT_TRUE(img);
            EXPECT_TRUE(img->zoned_clean_at_open());
            words = ReadWords(*img);
            words[3] = Word(ZoneState::kImplicitOpen, 3, 100);
            words[4] = Word(ZoneState::kFull, 4, kZoneSectors - 128, kZoneAttrZfc);
            words[kNrZones - 1] = Word(ZoneState::kClosed, kNrZones - 1, 7, kZoneAttrZdev);
            ASSERT_OK(img->WriteZoneWords(3, 2, &words[3]));
            ASSERT_OK(img->WriteZoneWords(kNrZones - 1, 1, &words[kNrZones - 1]));
            for (size_t i = 0; i < zd.size(); i++) zd[i] = static_cast<uint8_t>(i + 1);
            ASSERT_OK(img->WriteZded(kNrZones - 1, zd.data()));
            // Guest data next to the tables does not disturb them.
            std::vector<uint8_t> data(kZoneSize, 0x99);
            ASSERT_OK(img->Write((kNrZones - 1) * kZoneSize, data.data(), data.size()));
            ASSERT_OK(img->Discard(0, kZoneSize * kNrZones));
            ASSERT_OK(img->Close());
        }
        auto img = OpenOn(mem.get(), false);
        ASSERT_TRUE(img);
        EXPECT_TRUE(img->zoned_clean_at_open());
        EXPECT_EQ(ReadWords(*img), words);
        std::vector<uint8_t> got(kZdExt);
        ASSERT_OK(img->ReadZded(kNrZones - 1, got.data()));
        EXPECT_EQ(got, zd);
        ASSERT_OK(img->ReadZded(kNrZones - 2, got.data()));
        EXPECT_EQ(got, std::vector<uint8_t>(kZdExt, 0));
        ASSERT_NO_FATAL_FAILURE(ExpectClean(*img));
    }
}

TEST(Qcow2Zoned, ZoneIndexesAreBoundsChecked) {
    auto mem = NewZonedImage();
    auto img = OpenOn(mem.get(), true);
    ASSERT_TRUE(img);
    uint64_t w[2] = {};
    EXPECT_EQ(img->ReadZoneWords(kNrZones - 1, 2, w).err(), EINVAL);
    EXPECT_EQ(img->ReadZoneWords(kNrZones + 1, 0, w).err(), EINVAL);
    EXPECT_EQ(img->WriteZoneWords(0xffffffffu, 2, w).err(), EINVAL);
    std::vector<uint8_t> zd(kZdExt);
    EXPECT_EQ(img->ReadZded(kNrZones, zd.data()).err(), EINVAL);
    EXPECT_EQ(img->WriteZded(kNrZones, zd.data()).err(), EINVAL);
}

TEST(Qcow2Zoned, CrashLeavesInUseFlagAndFlushedWords) {
    auto mem = NewZonedImage();
    auto ff = NewFaultFile(std::move(mem));
    uint64_t flushed = Word(ZoneState::kClosed, 5, 64);
    {
        auto img = OpenOn(ff.get(), true);
        ASSERT_TRUE(img);
        ASSERT_OK(img->WriteZoneWords(5, 1, &flushed));
        ASSERT_OK(img->Flush());
        uint64_t lost = Word(ZoneState::kFull, 5, kZoneSectors - 128);
        ASSERT_OK(img->WriteZoneWords(5, 1, &lost));
        ASSERT_OK(ff->SimulateCrash(CrashMode::kDropUnsynced, 1));
    }
    ff->PowerOn();
    auto img = OpenOn(ff.get(), true);
    ASSERT_TRUE(img);
    EXPECT_FALSE(img->zoned_clean_at_open()) << "the writer died without closing";
    EXPECT_EQ(ReadWords(*img)[5], flushed);
    ASSERT_NO_FATAL_FAILURE(ExpectClean(*img));
    ASSERT_OK(img->Close());
    img = OpenOn(ff.get(), false);
    ASSERT_TRUE(img);
    EXPECT_TRUE(img->zoned_clean_at_open());
}

TEST(Qcow2Zoned, CheckFindsAndRepairsInvalidZoneWords) {
    auto mem = NewZonedImage();
    {
        auto img = OpenOn(mem.get(), true);
        ASSERT_TRUE(img);
        std::vector<uint64_t> bad = {
            ZoneWord{uint64_t{5} << ZoneWord::kStateShift | (3 * kZoneSectors)}.raw,  // illegal state 5
            Word(ZoneState::kClosed, 4, kZoneSectors + 10),                              // wp past the zone
            Word(ZoneState::kEmpty, 5, 8),                                               // empty, wp moved
            Word(ZoneState::kFull, 6, 8),                                                // full, wp not at cap
            ZoneWord::Make(ZoneState::kNotWritePointer, ZoneType::kConventional, 0, 7 * kZoneSectors).raw,
        };
        ASSERT_OK(img->WriteZoneWords(3, static_cast<uint32_t>(bad.size()), bad.data()));
        uint64_t seq_conv = Word(ZoneState::kEmpty, 0, 0);  // conventional zone with a seq word
        ASSERT_OK(img->WriteZoneWords(0, 1, &seq_conv));
        ASSERT_OK(img->Close());
    }
    {
        auto img = OpenOn(mem.get(), false);
        ASSERT_TRUE(img);
        auto r = CheckOf(*img, RepairMode::kNone);
        ASSERT_TRUE(r.ok()) << r.status().message();
        EXPECT_EQ(r->zone_errors, 6u);
        EXPECT_GE(r->corruptions, 6u);
        EXPECT_EQ(r->leaks, 0u);
        EXPECT_EQ(CheckOf(*img, RepairMode::kAll).status().err(), EROFS);
    }
    {
        auto img = OpenOn(mem.get(), true);
        ASSERT_TRUE(img);
        auto r = CheckOf(*img, RepairMode::kAll);
        ASSERT_TRUE(r.ok()) << r.status().message();
        EXPECT_EQ(r->zone_errors, 6u);
        EXPECT_EQ(r->corruptions_fixed, r->corruptions);
        ASSERT_OK(img->Close());
    }
    auto img = OpenOn(mem.get(), false);
    ASSERT_TRUE(img);
    ASSERT_NO_FATAL_FAILURE(ExpectClean(*img));
    auto w = ReadWords(*img);
    EXPECT_EQ(ZoneWord{w[0]}.type(), ZoneType::kConventional);
    EXPECT_EQ(ZoneWord{w[4]}.state(), ZoneState::kFull);  // clamped to the capacity
    EXPECT_EQ(ZoneWord{w[5]}.state(), ZoneState::kClosed);
    EXPECT_EQ(ZoneWord{w[5]}.wp(), 5 * kZoneSectors + 8);
}

// Clears our autoclear bit as QEMU does when it opens an image for writing.
void ClearAutoclearZoned(File& f) {
    uint8_t b;
    ASSERT_OK(f.Pread(&b, 1, offsetof(Header, autoclear_features) + 7 - kAutoclearZonedBit / 8));
    ASSERT_TRUE(b & (1u << (kAutoclearZonedBit % 8))) << "bit 48 not set by qzns";
    b &= static_cast<uint8_t>(~(1u << (kAutoclearZonedBit % 8)));
    ASSERT_OK(f.Pwrite(&b, 1, offsetof(Header, autoclear_features) + 7 - kAutoclearZonedBit / 8));
}

uint64_t Autoclear(File& f) {
    be64 v;
    EXPECT_TRUE(f.Pread(&v, 8, offsetof(Header, autoclear_features)).ok());
    return v.get();
}

TEST(Qcow2Zoned, ForeignWriterWithIntactTablesIsRevalidatedAndAccepted) {
    auto mem = NewZonedImage();
    EXPECT_TRUE(Autoclear(*mem) & kAutoclearZoned);
    ClearAutoclearZoned(*mem);
    {
        auto img = OpenOn(mem.get(), false);
        ASSERT_TRUE(img);
        EXPECT_TRUE(img->info().foreign_writer);
        EXPECT_EQ(img->info().zoned_problem, "");
    }
    auto img = OpenOn(mem.get(), true);
    ASSERT_TRUE(img);
    EXPECT_TRUE(Autoclear(*mem) & kAutoclearZoned) << "a writer that validated the tables sets the bit again";
    ASSERT_NO_FATAL_FAILURE(ExpectClean(*img));
}

TEST(Qcow2Zoned, ForeignWriterThatBrokeWordsNeedsRepair) {
    auto mem = NewZonedImage();
    {
        auto img = OpenOn(mem.get(), true);
        ASSERT_TRUE(img);
        uint64_t bad = Word(ZoneState::kClosed, 6, 3 * kZoneSectors);
        ASSERT_OK(img->WriteZoneWords(6, 1, &bad));
        ASSERT_OK(img->Close());
    }
    ClearAutoclearZoned(*mem);
    {
        auto ro = OpenOn(mem.get(), false);
        ASSERT_TRUE(ro);
        EXPECT_TRUE(ro->info().foreign_writer);
        EXPECT_NE(ro->info().zoned_problem.find("zone 6"), std::string::npos) << ro->info().zoned_problem;
    }
    Image::OpenFlags wf;
    wf.write = true;
    auto refused = Image::Open(BorrowFile(mem.get()), wf, nullptr);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().err(), EUCLEAN);
    EXPECT_NE(refused.status().message().find("check -r all"), std::string::npos) << refused.status().message();
    {
        auto fix = OpenOn(mem.get(), true, /*check_mode=*/true);
        ASSERT_TRUE(fix);
        auto r = fix->Check(RepairMode::kAll);
        ASSERT_TRUE(r.ok()) << r.status().message();
        EXPECT_EQ(r->zone_errors, 1u);
        EXPECT_EQ(r->corruptions_fixed, r->corruptions);
        ASSERT_OK(fix->Close());
    }
    auto img = OpenOn(mem.get(), true);
    ASSERT_TRUE(img);
    EXPECT_EQ(img->info().zoned_problem, "");
    EXPECT_TRUE(Autoclear(*mem) & kAutoclearZoned);
    ASSERT_NO_FATAL_FAILURE(ExpectClean(*img));
}

TEST(Qcow2Zoned, ForeignResizeIsDetected) {
    auto mem = NewZonedImage();
    ClearAutoclearZoned(*mem);
    be64 size(kZoneSize * (kNrZones + 2));
    ASSERT_OK(mem->Pwrite(&size, 8, offsetof(Header, size)));
    auto ro = OpenOn(mem.get(), false);
    ASSERT_TRUE(ro);
    EXPECT_NE(ro->info().zoned_problem.find("resized"), std::string::npos) << ro->info().zoned_problem;
    Image::OpenFlags wf;
    wf.write = true;
    EXPECT_FALSE(Image::Open(BorrowFile(mem.get()), wf, nullptr).ok());
}

// With the bit still set nothing is re-validated at open (that is the point of the bit), but
// check still looks at every word.
TEST(Qcow2Zoned, TrustedTablesAreStillChecked) {
    auto mem = NewZonedImage();
    {
        auto img = OpenOn(mem.get(), true);
        ASSERT_TRUE(img);
        uint64_t bad = Word(ZoneState::kEmpty, 9, 1);
        ASSERT_OK(img->WriteZoneWords(9, 1, &bad));
        ASSERT_OK(img->Close());
    }
    auto img = OpenOn(mem.get(), true);
    ASSERT_TRUE(img);
    EXPECT_EQ(img->info().zoned_problem, "");
    auto r = img->Check(RepairMode::kNone);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->zone_errors, 1u);
}

}  // namespace
}  // namespace qzns::qcow2
