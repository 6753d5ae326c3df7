// The volatile write cache and the power switch (block/file-volatile.h, docs/power-cut.rst).
//
// First the cache as a File: reads see cached writes, punches and truncates; only Sync (or an
// eviction when full) reaches the image file; a cut keeps what its mode says, reproducibly.
// Then the promise a crash tester relies on, on a zoned image through BlockBackend::Open: with
// `lose-unflushed`, no byte written after the last completed flush survives and every byte
// flushed before it does, zone words included; without a cache, a cut loses nothing.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "block/block-backend.h"
#include "block/file-fault.h"
#include "block/file-volatile.h"
#include "block/qcow2/qcow2.h"

namespace qzns {
namespace {

std::vector<uint8_t> ReadAll(File& f, uint64_t len) {
    std::vector<uint8_t> b(len);
    Status st = f.Pread(b.data(), len, 0);
    EXPECT_TRUE(st.ok()) << st.message();
    return b;
}

// A MemFile the test keeps a handle on after VolatileCacheFile takes ownership.
struct Medium {
    File* raw = nullptr;
    std::unique_ptr<VolatileCacheFile> cache;
    explicit Medium(uint64_t capacity) {
        auto m = NewMemFile();
        raw = m.get();
        cache = std::make_unique<VolatileCacheFile>(std::move(m), capacity);
    }
};

TEST(VolatileCacheFile, WritesStayInMemoryUntilSync) {
    Medium m(1 << 20);
    std::vector<uint8_t> a(8192, 0xaa);
    ASSERT_TRUE(m.cache->Pwrite(a.data(), a.size(), 0).ok());
    ASSERT_TRUE(m.cache->PunchHole(1024, 1024).ok());
    EXPECT_EQ(*m.raw->Size(), 0u) << "the image file must not see an unflushed write";
    EXPECT_EQ(*m.cache->Size(), 8192u);
    auto seen = ReadAll(*m.cache, 8192);
    for (size_t i = 0; i < seen.size(); i++)
        ASSERT_EQ(seen[i], i >= 1024 && i < 2048 ? 0 : 0xaa) << "byte " << i;
    ASSERT_TRUE(m.cache->Sync().ok());
    EXPECT_EQ(ReadAll(*m.raw, 8192), seen);
    EXPECT_EQ(m.cache->stats().cached_ops, 0u);
}

TEST(VolatileCacheFile, TruncateZeroesWhatItCuts) {
    Medium m(1 << 20);
    std::vector<uint8_t> a(8192, 0x11);
    ASSERT_TRUE(m.raw->Pwrite(a.data(), a.size(), 0).ok());
    auto c = std::make_unique<VolatileCacheFile>(BorrowFile(m.raw), 1 << 20);
    ASSERT_TRUE(c->Truncate(4096).ok());
    ASSERT_TRUE(c->Truncate(8192).ok());
    EXPECT_EQ(*c->Size(), 8192u);
    auto seen = ReadAll(*c, 8192);
    EXPECT_EQ(seen[4095], 0x11);
    EXPECT_EQ(seen[4096], 0) << "bytes a truncate cut off read as zeros after it grows again";
    EXPECT_EQ(ReadAll(*m.raw, 8192)[4096], 0x11);
}

TEST(VolatileCacheFile, EvictsTheOldestWhenFull) {
    Medium m(8192);
    for (int i = 0; i < 3; i++) {
        std::vector<uint8_t> b(4096, uint8_t(i + 1));
        ASSERT_TRUE(m.cache->Pwrite(b.data(), b.size(), uint64_t(i) * 4096).ok());
    }
    // 12 KiB in an 8 KiB cache: written back oldest first until half of it is free.
    auto raw = ReadAll(*m.raw, 12288);
    EXPECT_EQ(raw[0], 1);
    EXPECT_EQ(raw[4096], 2);
    EXPECT_LE(m.cache->stats().cached_bytes, 4096u);
    EXPECT_GE(m.cache->stats().evicted_ops, 2u);
    ASSERT_TRUE(m.cache->PowerCut(PowerCutMode::kLoseUnflushed, 0).ok());
    EXPECT_EQ(ReadAll(*m.raw, 12288)[4096], 2) << "an evicted write is on the medium";
}

TEST(VolatileCacheFile, LoseUnflushedKeepsExactlyTheSyncedBytes) {
    Medium m(1 << 20);
    std::vector<uint8_t> a(4096, 0x5a), b(4096, 0xa5);
    ASSERT_TRUE(m.cache->Pwrite(a.data(), 4096, 0).ok());
    ASSERT_TRUE(m.cache->Sync().ok());
    ASSERT_TRUE(m.cache->Pwrite(b.data(), 4096, 0).ok());
    ASSERT_TRUE(m.cache->Pwrite(b.data(), 4096, 4096).ok());
    auto rep = m.cache->PowerCut(PowerCutMode::kLoseUnflushed, 1);
    ASSERT_TRUE(rep.ok()) << rep.status().message();
    EXPECT_EQ(rep->ops_lost, 2u);
    EXPECT_EQ(rep->bytes_lost, 8192u);
    EXPECT_EQ(rep->bytes_kept, 0u);
    EXPECT_EQ(ReadAll(*m.raw, 4096), a);
    EXPECT_EQ(*m.raw->Size(), 4096u);
    std::vector<uint8_t> buf(512);
    Status st = m.cache->Pread(buf.data(), 512, 0);
    EXPECT_EQ(st.err(), EIO) << "powered off";
    EXPECT_NE(st.message().find("power"), std::string::npos) << st.message();
    EXPECT_EQ(m.cache->Pwrite(buf.data(), 512, 0).err(), EIO);
    EXPECT_EQ(m.cache->Sync().err(), EIO);
}

std::vector<uint8_t> RandomCut(uint64_t seed, PowerCutReport* rep) {
    Medium m(1 << 20);
    std::mt19937_64 rng(99);
    for (int i = 0; i < 40; i++) {
        std::vector<uint8_t> b(512 * (1 + rng() % 16));
        for (auto& x : b) x = uint8_t(rng());
        EXPECT_TRUE(m.cache->Pwrite(b.data(), b.size(), 512 * (rng() % 64)).ok());
    }
    auto r = m.cache->PowerCut(PowerCutMode::kRandom, seed);
    EXPECT_TRUE(r.ok());
    *rep = *r;
    return ReadAll(*m.raw, 128 * 512);
}

TEST(VolatileCacheFile, RandomCutReplaysFromItsSeed) {
    PowerCutReport r1, r2, r3;
    auto a = RandomCut(7, &r1), b = RandomCut(7, &r2), c = RandomCut(8, &r3);
    EXPECT_EQ(a, b) << "same seed, same medium";
    EXPECT_NE(a, c) << "another seed keeps other sectors";
    EXPECT_GT(r1.bytes_kept, 0u);
    EXPECT_GT(r1.bytes_lost, 0u);
    EXPECT_EQ(r1.bytes_kept % 512, 0u) << "torn at sector boundaries";
}

// The cache against a byte-array model under random writes, punches, syncs and evictions.
TEST(VolatileCacheFile, ReadsMatchAModel) {
    Medium m(16384);
    std::vector<uint8_t> model(65536, 0);
    std::mt19937_64 rng(1);
    for (int i = 0; i < 3000; i++) {
        uint64_t off = rng() % 60000, len = 1 + rng() % 5000;
        len = std::min<uint64_t>(len, model.size() - off);
        switch (rng() % 10) {
        case 0: ASSERT_TRUE(m.cache->PunchHole(off, len).ok()); std::fill_n(model.begin() + off, len, 0); break;
        case 1: ASSERT_TRUE(m.cache->Sync().ok()); break;
        default: {
            std::vector<uint8_t> b(len, uint8_t(rng()));
            ASSERT_TRUE(m.cache->Pwrite(b.data(), len, off).ok());
            std::copy(b.begin(), b.end(), model.begin() + off);
        }
        }
        uint64_t roff = rng() % 60000, rlen = 1 + rng() % 5000;
        std::vector<uint8_t> got(rlen);
        ASSERT_TRUE(m.cache->Pread(got.data(), rlen, roff).ok());
        for (uint64_t k = 0; k < rlen; k++)
            ASSERT_EQ(got[k], roff + k < model.size() ? model[roff + k] : 0) << "op " << i << " byte " << roff + k;
    }
    ASSERT_TRUE(m.cache->Sync().ok());
    auto raw = ReadAll(*m.raw, model.size());
    EXPECT_EQ(raw, model);
}

// ---- through the block backend, on a zoned image file -------------------------------------

constexpr uint64_t kZone = 1 << 20;
constexpr uint32_t kConv = 1;
constexpr uint32_t kZones = 6;

class PowerCutBackend : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/qzns-power-cut-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        path_ = dir_ + "/zns.qcow2";
        MakeImage();
    }
    void MakeImage(uint32_t max_active = 0) {
        unlink(path_.c_str());
        FileOpenFlags ff;
        ff.write = ff.create = true;
        ff.lock = false;
        auto f = OpenPosixFile(path_, ff);
        ASSERT_TRUE(f.ok()) << f.status().message();
        qcow2::CreateOptions co;
        co.size = kZones * kZone;
        qcow2::ZonedGeometry g;
        g.profile = qcow2::ZonedProfile::kZns;
        g.zone_size = g.zone_capacity = kZone;
        g.nr_conv_zones = kConv;
        g.max_append_bytes = 64 * 1024;
        g.max_active_zones = g.max_open_zones = max_active;
        co.zoned = g;
        ASSERT_TRUE(qcow2::Create(std::move(*f), co).ok());
    }
    void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }

    std::unique_ptr<BlockBackend> Open(uint64_t cache) {
        BlockBackendOptions o;
        o.filename = path_;
        o.volatile_cache = cache;
        o.aio = AioMode::kSync;
        auto be = BlockBackend::Open(o);
        EXPECT_TRUE(be.ok()) << be.status().message();
        return be.ok() ? std::move(*be) : nullptr;
    }

    // Everything a reader of the disk sees: every zone's wp and state, and every byte.
    struct Seen {
        std::vector<uint64_t> wp;
        std::vector<ZoneState> state;
        std::vector<uint8_t> data;
    };
    static Seen Look(BlockBackend& be) {
        Seen s;
        for (uint32_t z = 0; z < kZones; z++) {
            auto zi = be.GetZone(z);
            EXPECT_TRUE(zi.ok());
            s.wp.push_back(zi->wp);
            s.state.push_back(zi->state);
        }
        s.data.resize(kZones * kZone);
        EXPECT_TRUE(be.Read(0, s.data.data(), s.data.size()).ok());
        return s;
    }

    // Seeded writes (conventional overwrites, sequential writes, appends), flushes and resets.
    // Returns what the disk looked like right after the last completed flush point; `now` gets
    // what it looks like at the end.
    Seen Workload(BlockBackend& be, uint64_t seed, Seen* now) {
        std::mt19937_64 rng(seed);
        Seen flushed = Look(be);
        for (int i = 0; i < 200; i++) {
            uint32_t what = rng() % 20;
            uint32_t z = kConv + rng() % (kZones - kConv);
            uint64_t len = 512 * (1 + rng() % 32);
            std::vector<uint8_t> b(len);
            for (auto& x : b) x = uint8_t(rng() | 1);  // never zero: a lost write shows
            if (what < 6) {
                uint64_t off = 512 * (rng() % (kZone / 512 - 32));
                EXPECT_TRUE(be.Write(off, b.data(), len, false).ok());
            } else if (what < 12) {
                auto zi = be.GetZone(z);
                if (zi->wp + len <= zi->start + zi->cap) {
                EXPECT_TRUE(be.Write(zi->wp, b.data(), len, false).ok());
            }
            } else if (what < 16) {
                auto zi = be.GetZone(z);
                if (zi->wp + len <= zi->start + zi->cap) {
                EXPECT_TRUE(be.Append(zi->start, b.data(), len, false).ok());
            }
            } else if (what < 18) {
                EXPECT_TRUE(be.Flush().ok());
                flushed = Look(be);
            } else if (what < 19) {
                // Zone management completes durably: a flush point too.
                EXPECT_TRUE(be.ZoneMgmt(ZoneMgmtOp::kReset, z * kZone, false).ok());
                flushed = Look(be);
            } else {
                // A FUA write makes everything before it durable as well (it is a flush).
                auto zi = be.GetZone(z);
                if (zi->wp + len <= zi->start + zi->cap) {
                    EXPECT_TRUE(be.Write(zi->wp, b.data(), len, true).ok());
                    flushed = Look(be);
                }
            }
        }
        // End with writes that are certainly unflushed.
        std::vector<uint8_t> tail(4096, 0x77);
        EXPECT_TRUE(be.Write(0, tail.data(), tail.size(), false).ok());
        auto zi = be.GetZone(kConv);
        if (zi->wp + 4096 <= zi->start + zi->cap) {
                EXPECT_TRUE(be.Write(zi->wp, tail.data(), 4096, false).ok());
            }
        *now = Look(be);
        return flushed;
    }

    static void ExpectPowerCycled(const Seen& before, const Seen& after) {
        for (uint32_t z = kConv; z < kZones; z++) {
            ZoneState want = before.state[z];
            // A power cycle closes opened zones (docs/durability.rst).
            if (want == ZoneState::kImplicitOpen || want == ZoneState::kExplicitOpen)
                want = before.wp[z] == z * kZone ? ZoneState::kEmpty : ZoneState::kClosed;
            EXPECT_EQ(after.wp[z], before.wp[z]) << "zone " << z;
            EXPECT_EQ(after.state[z], want) << "zone " << z;
        }
        for (size_t i = 0; i < before.data.size(); i++)
            if (after.data[i] != before.data[i]) {
                ADD_FAILURE() << "byte " << i << " (zone " << i / kZone << ") reads " << int(after.data[i])
                              << ", at the last flush it read " << int(before.data[i]);
                return;
            }
    }

    static void ExpectImageClean(const std::string& path) {
        FileOpenFlags ff;
        ff.lock = false;
        auto f = OpenPosixFile(path, ff);
        ASSERT_TRUE(f.ok());
        auto img = qcow2::Image::Open(std::move(*f), {.write = false}, nullptr);
        ASSERT_TRUE(img.ok()) << img.status().message();
        auto cr = (*img)->Check(qcow2::RepairMode::kNone);
        ASSERT_TRUE(cr.ok());
        EXPECT_EQ(cr->corruptions, 0u);
        EXPECT_EQ(cr->check_errors, 0u);
        for (auto& msg : cr->messages) ADD_FAILURE() << msg;
    }

    std::string dir_, path_;
};

TEST_F(PowerCutBackend, LoseUnflushedLosesExactlyWhatWasNotFlushed) {
    for (uint64_t seed = 1; seed <= 8; seed++) {
        SCOPED_TRACE("seed " + std::to_string(seed));
        auto be = Open(64 << 20);
        ASSERT_TRUE(be);
        ASSERT_NE(be->volatile_cache(), nullptr);
        Seen now;
        Seen flushed = Workload(*be, seed, &now);
        ASSERT_NE(now.data, flushed.data) << "the workload must leave unflushed writes";
        auto rep = be->PowerCut(PowerCutMode::kLoseUnflushed, seed);
        ASSERT_TRUE(rep.ok()) << rep.status().message();
        EXPECT_GT(rep->bytes_lost, 0u);
        EXPECT_EQ(rep->bytes_kept, 0u);
        be.reset();
        ExpectImageClean(path_);
        be = Open(64 << 20);
        ASSERT_TRUE(be);
        ExpectPowerCycled(flushed, Look(*be));
        ASSERT_TRUE(be->Close().ok());
    }
}

TEST_F(PowerCutBackend, WithoutACacheNothingIsLost) {
    auto be = Open(0);
    ASSERT_TRUE(be);
    Seen now;
    (void)Workload(*be, 3, &now);
    auto rep = be->PowerCut(PowerCutMode::kLoseUnflushed, 0);
    ASSERT_TRUE(rep.ok()) << rep.status().message();
    EXPECT_EQ(rep->bytes_lost, 0u);
    be.reset();
    ExpectImageClean(path_);
    be = Open(0);
    ExpectPowerCycled(now, Look(*be));
    ASSERT_TRUE(be->Close().ok());
}

TEST_F(PowerCutBackend, RandomCutKeepsFlushedDataAndAValidImage) {
    for (uint64_t seed = 1; seed <= 8; seed++) {
        SCOPED_TRACE("seed " + std::to_string(seed));
        auto be = Open(64 << 20);
        Seen now;
        Seen flushed = Workload(*be, seed + 100, &now);
        ASSERT_TRUE(be->PowerCut(PowerCutMode::kRandom, seed).ok());
        be.reset();
        ExpectImageClean(path_);
        be = Open(64 << 20);
        Seen after = Look(*be);
        for (uint32_t z = kConv; z < kZones; z++) {
            EXPECT_GE(after.wp[z], flushed.wp[z]) << "zone " << z;
            EXPECT_LE(after.wp[z], now.wp[z]) << "zone " << z;
            for (uint64_t i = z * kZone; i < after.wp[z]; i++)
                ASSERT_EQ(after.data[i], now.data[i]) << "byte " << i << " below the wp";
        }
        ASSERT_TRUE(be->Close().ok());
    }
}

TEST_F(PowerCutBackend, RandomCutKeepsASeededPrefixOfEachZone) {
    struct PrefixCut {
        Seen flushed, now, after;
        PowerCutReport rep;
    };
    // On a fresh image: zones flushed empty, part-written and nearly full, then more writes to
    // all of them (a zone written up to its capacity among them) and none flushed.
    auto cut = [&](uint64_t seed, uint64_t atomic_unit) {
        PrefixCut c;
        MakeImage();
        auto be = Open(64 << 20);
        EXPECT_TRUE(be);
        if (!be) return c;
        std::mt19937_64 rng(seed);
        auto write = [&](uint64_t off, uint64_t len) {
            std::vector<uint8_t> b(len);
            for (auto& x : b) x = uint8_t(rng() | 1);  // never zero: a lost sector shows
            EXPECT_TRUE(be->Write(off, b.data(), len, false).ok()) << "write at " << off;
        };
        for (uint32_t z = kConv + 1; z < kZones; z++)
            write(z * kZone, z == kZones - 1 ? kZone - 1024 : 512 * (1 + rng() % 256));
        write(0, 8192);
        EXPECT_TRUE(be->Flush().ok());
        c.flushed = Look(*be);
        for (int round = 0; round < 4; round++)
            for (uint32_t z = kConv; z < kZones - 1; z++)
                write(be->GetZone(z)->wp, z == kConv ? 512 : 512 * (1 + rng() % 64));
        write(be->GetZone(kZones - 1)->wp, 512);
        write(be->GetZone(kZones - 1)->wp, 512);
        write(4096, 8192);
        c.now = Look(*be);
        auto rep = be->PowerCut(PowerCutMode::kRandom, seed, atomic_unit);
        EXPECT_TRUE(rep.ok()) << rep.status().message();
        if (rep.ok()) c.rep = *rep;
        be.reset();
        ExpectImageClean(path_);
        be = Open(64 << 20);
        EXPECT_TRUE(be);
        if (!be) return c;
        c.after = Look(*be);
        // Destroyed without a clean close, as a killed daemon: the prefixes are durable already.
        be.reset();
        be = Open(64 << 20);
        Seen again = Look(*be);
        EXPECT_EQ(again.wp, c.after.wp) << "a restart after the cut keeps the write pointers";
        EXPECT_EQ(again.state, c.after.state);
        EXPECT_TRUE(again.data == c.after.data) << "a restart after the cut keeps the data";
        EXPECT_TRUE(be->Close().ok());
        return c;
    };
    uint64_t partial = 0, full = 0, empty = 0, kept_some = 0;
    for (uint64_t seed = 1; seed <= 16; seed++) {
        SCOPED_TRACE("seed " + std::to_string(seed));
        PrefixCut c = cut(seed, 512);
        ASSERT_EQ(c.after.wp.size(), kZones);
        uint64_t unflushed = 0, part = 0, kept = 0, lost = 0;
        for (uint32_t z = kConv; z < kZones; z++) {
            SCOPED_TRACE("zone " + std::to_string(z));
            uint64_t start = z * kZone, wp = c.after.wp[z];
            ASSERT_GT(c.now.wp[z], c.flushed.wp[z]) << "the workload must leave every zone unflushed writes";
            EXPECT_GE(wp, c.flushed.wp[z]);
            EXPECT_LE(wp, c.now.wp[z]);
            EXPECT_EQ(wp % 512, 0u);
            ZoneState want = wp == start ? ZoneState::kEmpty : wp == start + kZone ? ZoneState::kFull : ZoneState::kClosed;
            EXPECT_EQ(c.after.state[z], want) << "wp " << wp;
            for (uint64_t i = start; i < start + kZone; i++) {
                uint8_t expect = i < wp ? c.now.data[i] : 0;
                ASSERT_EQ(c.after.data[i], expect) << "byte " << i << (i < wp ? " below" : " at or past") << " the wp " << wp;
            }
            unflushed++;
            part += wp > c.flushed.wp[z] && wp < c.now.wp[z];
            kept += wp - c.flushed.wp[z];
            lost += c.now.wp[z] - wp;
            full += want == ZoneState::kFull;
            empty += want == ZoneState::kEmpty;
            kept_some += wp > c.flushed.wp[z];
        }
        EXPECT_EQ(c.rep.zones_unflushed, unflushed);
        EXPECT_EQ(c.rep.zones_partial, part);
        EXPECT_EQ(c.rep.zone_bytes_kept, kept);
        EXPECT_EQ(c.rep.zone_bytes_lost, lost);
        partial += part;
        if (seed == 3) {
            PrefixCut replay = cut(seed, 512);
            EXPECT_EQ(replay.after.wp, c.after.wp) << "the same seed cuts the zones at the same sectors";
            EXPECT_EQ(replay.after.state, c.after.state);
            EXPECT_TRUE(replay.after.data == c.after.data) << "the same seed keeps the same bytes";
        }
    }
    printf("[power-cut] 16 random cuts of 5 zones: %llu partial prefixes, %llu zones kept some unflushed writes, "
           "%llu came back Full, %llu Empty\n",
           static_cast<unsigned long long>(partial), static_cast<unsigned long long>(kept_some),
           static_cast<unsigned long long>(full), static_cast<unsigned long long>(empty));
    EXPECT_GT(partial, 0u) << "random cuts must keep strict prefixes of unflushed zone writes";
    EXPECT_GT(full, 0u) << "a zone whose whole unflushed tail is kept up to its capacity is Full";
    EXPECT_GT(empty, 0u) << "a zone that keeps nothing of its first writes is Empty";

    // A drive that programs 16 KiB atomically ends a kept prefix at a 16 KiB boundary of the
    // zone, unless it keeps all or nothing of the zone's unflushed writes.
    uint64_t inner = 0;
    for (uint64_t seed = 1; seed <= 6; seed++) {
        SCOPED_TRACE("16 KiB unit, seed " + std::to_string(seed));
        PrefixCut c = cut(seed, 16384);
        ASSERT_EQ(c.after.wp.size(), kZones);
        for (uint32_t z = kConv; z < kZones; z++) {
            uint64_t wp = c.after.wp[z];
            if (wp == c.flushed.wp[z] || wp == c.now.wp[z]) continue;
            EXPECT_EQ((wp - z * kZone) % 16384, 0u) << "zone " << z << " wp " << wp;
            inner++;
        }
    }
    EXPECT_GT(inner, 0u) << "16 KiB-unit cuts must also keep strict prefixes";
}

// With one active zone: zone A was Closed at the flush and filled up since, zone B was Empty and
// written since. A cut that keeps part of A (Closed again, active) cannot also open B, which
// then keeps nothing; the cut still succeeds and says so.
TEST_F(PowerCutBackend, ActiveZoneLimitRefusesAPrefix) {
    const uint64_t a = (kConv + 1) * kZone, b = (kConv + 2) * kZone;
    uint64_t refused = 0;
    for (uint64_t seed = 1; seed <= 8; seed++) {
        SCOPED_TRACE("seed " + std::to_string(seed));
        MakeImage(1);
        auto be = Open(64 << 20);
        ASSERT_TRUE(be);
        std::vector<uint8_t> d(kZone, 0x5c);
        ASSERT_TRUE(be->Write(a, d.data(), 4096, false).ok());
        ASSERT_TRUE(be->Flush().ok());
        ASSERT_TRUE(be->Write(a + 4096, d.data(), kZone - 4096, false).ok());
        ASSERT_TRUE(be->Write(b, d.data(), 8192, false).ok()) << "A is Full: B may open";
        auto rep = be->PowerCut(PowerCutMode::kRandom, seed);
        ASSERT_TRUE(rep.ok()) << rep.status().message();
        be.reset();
        ExpectImageClean(path_);
        be = Open(0);
        ASSERT_TRUE(be);
        uint64_t wa = be->GetZone(kConv + 1)->wp, wb = be->GetZone(kConv + 2)->wp;
        bool a_active = wa < a + kZone;  // Closed: its durable wp is past its start
        if (a_active && wb == b) refused++;
        EXPECT_FALSE(a_active && wb > b) << "two active zones with a limit of one: A " << wa - a << ", B " << wb - b;
        uint64_t kept = (wa - (a + 4096)) + (wb - b);
        EXPECT_EQ(rep->zone_bytes_kept, kept);
        EXPECT_EQ(rep->zones_unflushed, 2u);
        ASSERT_TRUE(be->Close().ok());
    }
    EXPECT_GT(refused, 0u) << "some seed must keep part of A and have B's prefix refused";
}

TEST_F(PowerCutBackend, AtomicUnitMustBeAPowerOfTwo) {
    auto be = Open(1 << 20);
    EXPECT_EQ(be->PowerCut(PowerCutMode::kRandom, 1, 4000).status().err(), EINVAL);
    EXPECT_EQ(be->PowerCut(PowerCutMode::kRandom, 1, 256).status().err(), EINVAL);
    EXPECT_FALSE(be->volatile_cache()->powered_off()) << "a refused cut leaves the power on";
    ASSERT_TRUE(be->Close().ok());
}

TEST_F(PowerCutBackend, ReadOnlyAndTwiceAreRefused) {
    auto be = Open(1 << 20);
    ASSERT_TRUE(be->PowerCut(PowerCutMode::kLoseUnflushed, 0).ok());
    auto again = be->PowerCut(PowerCutMode::kLoseUnflushed, 0);
    EXPECT_FALSE(again.ok());
    be.reset();
    BlockBackendOptions o;
    o.filename = path_;
    o.read_only = true;
    auto ro = BlockBackend::Open(o);
    ASSERT_TRUE(ro.ok());
    EXPECT_EQ((*ro)->PowerCut(PowerCutMode::kLoseUnflushed, 0).status().err(), ENOTSUP);
}

}  // namespace
}  // namespace qzns
