// Power loss under zone workloads (DESIGN.md §4): seeded workloads of writes at the wp, appends,
// FUA writes, flushes, finishes, resets, opens, closes and ZDED updates run on a FaultFile; the
// power is cut after every n-th mutating file operation (and I/O errors are injected at chosen
// points). After each cut the durable image is reopened and must satisfy:
//   (a) qcow2 check finds no corruption (leaks allowed);
//   (b) every byte covered by a completed Flush or FUA write reads back exactly;
//   (c) every completed zone management action is there (state, wp, ZDED);
//   (d) no wp fell below its durable value, and the data below every persisted wp is the data
//       written there (a persisted wp is never ahead of durable data);
//   (e) every zone word is valid (ValidateZoneWord);
//   (f) opened zones came back Closed or Empty.
// A failing case prints its seed, cut point and crash mode, which replay it exactly.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "block/block-backend.h"
#include "block/file-fault.h"
#include "block/qcow2/qcow2.h"

namespace qzns {
namespace {

using S = ZoneState;

constexpr uint64_t kSector = 512;
constexpr uint64_t kZone = 32 * 1024;
constexpr uint64_t kCap = 28 * 1024;
constexpr uint32_t kConv = 1;
constexpr uint32_t kZones = 8;
constexpr uint64_t kDisk = kZones * kZone;
constexpr uint32_t kZde = 64;

qcow2::CreateOptions Options() {
    qcow2::CreateOptions co;
    co.size = kDisk;
    co.cluster_size = 4096;
    qcow2::ZonedGeometry g;
    g.profile = qcow2::ZonedProfile::kZns;
    g.zone_size = kZone;
    g.zone_capacity = kCap;
    g.nr_conv_zones = kConv;
    g.max_open_zones = 3;
    g.max_active_zones = 5;
    g.max_append_bytes = 4096;
    g.zd_extension_size = kZde;
    co.zoned = g;
    return co;
}

std::unique_ptr<File> CopyOf(File& src) {
    auto dst = NewMemFile();
    auto n = src.Size();
    std::vector<uint8_t> buf(n.ok() ? *n : 0);
    EXPECT_TRUE(src.Pread(buf.data(), buf.size(), 0).ok());
    EXPECT_TRUE(dst->Pwrite(buf.data(), buf.size(), 0).ok());
    return dst;
}

// A freshly created image, made once and copied for every run.
File& Pristine() {
    static std::unique_ptr<File> f = [] {
        auto m = NewMemFile();
        Status st = qcow2::Create(BorrowFile(m.get()), Options());
        EXPECT_TRUE(st.ok()) << st.message();
        return m;
    }();
    return *f;
}

// ---------------------------------------------------------------------------------------------
// The model: what the disk holds now, and what is guaranteed durable.

struct ZoneModel {
    uint64_t start = 0, cap_end = 0;
    // Now (in memory).
    uint64_t wp = 0;
    S state = S::kEmpty;
    uint8_t attrs = 0;
    std::vector<uint8_t> zde;
    // Guaranteed durable: from the zone's last durability point (a completed flush, management
    // action on this zone, or FUA write to it).
    uint64_t dur_wp = 0;
    S dur_state = S::kEmpty;
    bool dur_zdev = false;
    std::vector<uint8_t> dur_zde;
    uint64_t wp_max = 0;  // highest wp since that point
    // The operation in progress when the power went (may or may not have taken effect).
    bool reset_pending = false, finish_pending = false, zde_pending = false;
    std::vector<uint8_t> pending_zde;
    bool zde_unknown = false;
};

struct Model {
    std::vector<uint8_t> data = std::vector<uint8_t>(kDisk, 0);  // reads now (seq: zeros past wp)
    std::vector<bool> unknown = std::vector<bool>(kDisk / kSector, false);  // failed writes
    // Conventional sectors: the durable content plus every content written since.
    std::vector<std::vector<uint8_t>> conv_durable;
    std::vector<std::vector<std::vector<uint8_t>>> conv_since;
    std::vector<ZoneModel> zones;

    Model() {
        for (uint32_t z = 0; z < kZones; z++) {
            ZoneModel m;
            m.start = z * kZone;
            m.cap_end = m.start + (z < kConv ? kZone : kCap);
            m.wp = m.dur_wp = m.wp_max = m.start;
            m.state = m.dur_state = z < kConv ? S::kNotWritePointer : S::kEmpty;
            m.zde.assign(kZde, 0);
            m.dur_zde = m.zde;
            zones.push_back(m);
        }
        for (uint64_t s = 0; s < kConv * kZone / kSector; s++) {
            conv_durable.emplace_back(kSector, 0);
            conv_since.emplace_back();
        }
    }

    void ZonePoint(uint32_t z) {
        ZoneModel& m = zones[z];
        m.dur_wp = m.wp_max = m.wp;
        m.dur_state = m.state;
        m.dur_zdev = m.attrs & kZoneAttrZdev;
        m.dur_zde = m.zde;
        m.reset_pending = m.finish_pending = m.zde_pending = false;
    }
    void FullPoint() {
        for (uint32_t z = kConv; z < kZones; z++) ZonePoint(z);
        for (uint64_t s = 0; s < conv_durable.size(); s++) {
            std::copy(data.begin() + s * kSector, data.begin() + (s + 1) * kSector, conv_durable[s].begin());
            conv_since[s].clear();
        }
    }
    void ConvWrite(uint64_t off, const std::vector<uint8_t>& buf, bool durable) {
        std::copy(buf.begin(), buf.end(), data.begin() + off);
        for (uint64_t s = off / kSector; s < (off + buf.size()) / kSector; s++) {
            std::vector<uint8_t> sec(data.begin() + s * kSector, data.begin() + (s + 1) * kSector);
            if (durable) {
                conv_durable[s] = sec;
                conv_since[s].clear();
            } else {
                conv_since[s].push_back(std::move(sec));
            }
        }
    }
    void MarkUnknown(uint64_t off, uint64_t len) {
        for (uint64_t s = off / kSector; s < (off + len + kSector - 1) / kSector; s++) unknown[s] = true;
    }
};

// ---------------------------------------------------------------------------------------------
// The workload.

enum class Mode {
    kCut,       // run until the power goes (SetCrashPoint / persistent error), then crash
    kFailOnce,  // one injected error: the caller sees it, retries a flush, and carries on
};

struct RunResult {
    bool saw_io_error = false;
    uint64_t mutating_ops = 0;
    int ops_done = 0;
};

class Workload {
public:
    Workload(uint64_t seed, BlockBackend& b, Model& m, Mode mode) : rng_(seed), b_(b), m_(m), mode_(mode) {}

    // Runs up to nops operations; stops at the first I/O error in kCut mode.
    RunResult Run(int nops) {
        RunResult rr;
        for (int i = 0; i < nops; i++) {
            bool ok = Step();
            rr.ops_done = i + 1;
            if (!ok) {
                rr.saw_io_error = true;
                if (mode_ == Mode::kCut) break;
                Recover();
            }
        }
        return rr;
    }

private:
    uint32_t RandSeqZone() { return kConv + static_cast<uint32_t>(rng_() % (kZones - kConv)); }
    std::vector<uint8_t> Data(uint64_t len) {
        std::vector<uint8_t> v(len);
        uint64_t tag = rng_();
        for (uint64_t i = 0; i < len; i += 8) std::memcpy(&v[i], &tag, std::min<uint64_t>(8, len - i)), tag = tag * 6364136223846793005ull + 1;
        return v;
    }

    // Pulls the zones' current state from the backend (transitions are the state machine's job,
    // tested elsewhere; this test checks what survives a crash).
    void Sync() {
        for (uint32_t z = kConv; z < kZones; z++) {
            auto zi = b_.GetZone(z);
            ASSERT_TRUE(zi.ok());
            ZoneModel& m = m_.zones[z];
            if (zi->wp < m.wp) {  // reset
                std::fill(m_.data.begin() + zi->wp, m_.data.begin() + m.start + kZone, 0);
            }
            m.wp = zi->wp;
            m.wp_max = std::max(m.wp_max, m.wp);
            m.state = zi->state;
            m.attrs = zi->attrs;
            if (!(m.attrs & kZoneAttrZdev)) m.zde.assign(kZde, 0);
        }
    }

    // Returns false on an I/O error (not a zone error).
    bool Check(const BlkResult& r) { return r.ok() || r.zone_error != ZoneError::kNone; }

    bool Step() {
        int k = static_cast<int>(rng_() % 100);
        if (k < 30) {  // write at the wp
            uint32_t z = RandSeqZone();
            ZoneModel& zm = m_.zones[z];
            uint64_t len = (1 + rng_() % 16) * kSector;
            if (zm.wp + len > zm.cap_end) len = std::max<uint64_t>(kSector, zm.cap_end - zm.wp);
            bool fua = rng_() % 6 == 0;
            auto buf = Data(len);
            uint64_t off = zm.wp;
            BlkResult r = b_.Write(off, buf.data(), len, fua);
            if (r.ok()) {
                std::copy(buf.begin(), buf.end(), m_.data.begin() + off);
                Sync();
                if (fua) m_.ZonePoint(z);
            } else if (!Check(r)) {
                m_.MarkUnknown(off, len);
                Sync();
                return false;
            }
            return true;
        }
        if (k < 45) {  // append
            uint32_t z = RandSeqZone();
            uint64_t len = (1 + rng_() % 8) * kSector;
            auto buf = Data(len);
            uint64_t wp0 = m_.zones[z].wp;
            BlkResult r = b_.Append(m_.zones[z].start, buf.data(), len, false);
            if (r.ok()) {
                EXPECT_EQ(r.value, wp0);
                std::copy(buf.begin(), buf.end(), m_.data.begin() + r.value);
                Sync();
            } else if (!Check(r)) {
                m_.MarkUnknown(wp0, len);
                Sync();
                return false;
            }
            return true;
        }
        if (k < 55) {  // conventional zone: anywhere
            uint64_t len = (1 + rng_() % 16) * kSector;
            uint64_t off = rng_() % ((kConv * kZone - len) / kSector + 1) * kSector;
            bool fua = rng_() % 5 == 0;
            auto buf = Data(len);
            BlkResult r = b_.Write(off, buf.data(), len, fua);
            if (r.ok()) {
                m_.ConvWrite(off, buf, fua);
            } else if (!Check(r)) {
                m_.MarkUnknown(off, len);
                std::copy(buf.begin(), buf.end(), m_.data.begin() + off);
                return false;
            }
            return true;
        }
        if (k < 67) {  // flush
            BlkResult r = b_.Flush();
            if (!r.ok()) return false;
            m_.FullPoint();
            return true;
        }
        // Zone management.
        uint32_t z = RandSeqZone();
        ZoneModel& zm = m_.zones[z];
        BlkResult r;
        std::vector<uint32_t> affected{z};
        if (k < 73) {
            zm.finish_pending = true;
            r = b_.ZoneMgmt(ZoneMgmtOp::kFinish, zm.start, false);
        } else if (k < 81) {
            zm.reset_pending = true;
            r = b_.ZoneMgmt(ZoneMgmtOp::kReset, zm.start, false);
        } else if (k < 86) {
            r = b_.ZoneMgmt(ZoneMgmtOp::kOpen, zm.start, false);
        } else if (k < 91) {
            r = b_.ZoneMgmt(ZoneMgmtOp::kClose, zm.start, false);
        } else if (k < 96) {
            zm.zde_pending = true;
            zm.pending_zde = Data(kZde);
            r = b_.SetZoneDescExt(zm.start, zm.pending_zde.data());
            if (r.ok()) zm.zde = zm.pending_zde;
        } else if (k < 98) {
            affected.clear();
            for (uint32_t q = kConv; q < kZones; q++) {
                S s = m_.zones[q].state;
                if (s == S::kImplicitOpen || s == S::kExplicitOpen || s == S::kClosed || s == S::kFull) {
                    m_.zones[q].reset_pending = true;
                    affected.push_back(q);
                }
            }
            r = b_.ZoneMgmt(ZoneMgmtOp::kReset, 0, true);
        } else {
            affected.clear();
            for (uint32_t q = kConv; q < kZones; q++) affected.push_back(q);
            r = b_.ZoneMgmt(ZoneMgmtOp::kClose, 0, true);
        }
        if (r.ok()) {
            Sync();
            for (uint32_t q : affected) m_.ZonePoint(q);
            return true;
        }
        if (Check(r)) {  // refused: nothing changed
            for (uint32_t q : affected) {
                m_.zones[q].reset_pending = m_.zones[q].finish_pending = m_.zones[q].zde_pending = false;
            }
            return true;
        }
        return false;
    }

    // After an injected error (kFailOnce): the in-memory state may include the failed action;
    // whatever the failed operation touched has undefined content. A retried flush must then
    // make the in-memory state durable.
    void Recover() {
        for (uint32_t z = kConv; z < kZones; z++) {
            ZoneModel& zm = m_.zones[z];
            auto zi = b_.GetZone(z);
            ASSERT_TRUE(zi.ok());
            if (zi->wp > zm.wp) m_.MarkUnknown(zm.wp, zi->wp - zm.wp);  // failed write / finish
            if (zm.zde_pending) zm.zde_unknown = (zi->attrs & kZoneAttrZdev) != 0;
        }
        Sync();
        BlkResult r = b_.Flush();
        ASSERT_TRUE(r.ok()) << "a flush after a single injected error failed: " << r.message();
        m_.FullPoint();
    }

    std::mt19937_64 rng_;
    BlockBackend& b_;
    Model& m_;
    Mode mode_;
};

// ---------------------------------------------------------------------------------------------
// The checks after a crash.

std::string Where(uint64_t seed, uint64_t cut, const char* mode) {
    return "seed " + std::to_string(seed) + " cut " + std::to_string(cut) + " mode " + mode;
}

void CheckRecovered(File& disk, const Model& m, const std::string& where, bool deep) {
    SCOPED_TRACE(where);
    // (a) and (e), before anything writes to the image.
    {
        auto img = qcow2::Image::Open(BorrowFile(&disk), {.write = false}, nullptr);
        ASSERT_TRUE(img.ok()) << img.status().message();
        auto cr = (*img)->Check(qcow2::RepairMode::kNone);
        ASSERT_TRUE(cr.ok()) << cr.status().message();
        EXPECT_EQ(cr->corruptions, 0u);
        EXPECT_EQ(cr->check_errors, 0u);
        if (cr->corruptions) {
            for (auto& msg : cr->messages) ADD_FAILURE() << msg;
        }
        std::vector<uint64_t> words(kZones);
        ASSERT_TRUE((*img)->ReadZoneWords(0, kZones, words.data()).ok());
        for (uint32_t z = 0; z < kZones; z++) {
            ZoneGeometry g;
            g.zslba = z * kZone / kSector;
            g.zsze = kZone / kSector;
            g.zcap = (z < kConv ? kZone : kCap) / kSector;
            g.type = z < kConv ? ZoneType::kConventional : ZoneType::kSeqWriteRequired;
            Status st = ValidateZoneWord(ZoneWord{words[z]}, g);
            EXPECT_TRUE(st.ok()) << "zone " << z << ": " << st.message();
            if (z < kConv) continue;
            // The layout survives the cut: a zone is one linear extent or not stored at all,
            // and a zone with durable data is linear.
            auto ext = (*img)->MapZone(z, false);
            ASSERT_TRUE(ext.ok()) << ext.status().message();
            EXPECT_NE(ext->kind, ZoneExtent::Kind::kScattered) << "zone " << z << " lost its linear extent";
            // (Finish of an empty zone moves its wp without storing anything.)
            ZoneWord w{words[z]};
            if (w.wp() > g.zslba && w.state() != S::kFull) {
                EXPECT_EQ(ext->kind, ZoneExtent::Kind::kLinear) << "zone " << z << " has data but no extent";
            }
        }
    }
    // Recovery.
    auto img = qcow2::Image::Open(BorrowFile(&disk), {.write = true}, nullptr);
    ASSERT_TRUE(img.ok()) << img.status().message();
    auto be = BlockBackend::OpenDriver(std::move(*img));
    ASSERT_TRUE(be.ok()) << be.status().message();
    BlockBackend& b = **be;
    std::vector<uint8_t> all(kDisk);
    ASSERT_TRUE(b.Read(0, all.data(), kDisk).ok());
    // Conventional zones: each sector holds its durable content or something written since.
    for (uint64_t s = 0; s < m.conv_durable.size(); s++) {
        if (m.unknown[s]) continue;
        const uint8_t* got = &all[s * kSector];
        bool ok = std::memcmp(got, m.conv_durable[s].data(), kSector) == 0;
        for (const auto& c : m.conv_since[s]) ok = ok || std::memcmp(got, c.data(), kSector) == 0;
        EXPECT_TRUE(ok) << "conventional sector " << s << " holds data never written there";
    }
    for (uint32_t z = kConv; z < kZones; z++) {
        const ZoneModel& zm = m.zones[z];
        SCOPED_TRACE("zone " + std::to_string(z));
        auto zi = b.GetZone(z);
        ASSERT_TRUE(zi.ok());
        uint64_t W = zi->wp;
        // (f)
        EXPECT_TRUE(zi->state != S::kImplicitOpen && zi->state != S::kExplicitOpen) << ZoneStateName(zi->state);
        auto data_matches = [&](uint64_t end) {
            for (uint64_t off = zm.start; off < end; off += kSector) {
                if (m.unknown[off / kSector]) continue;
                if (std::memcmp(&all[off], &m.data[off], kSector) != 0) return false;
            }
            return true;
        };
        auto zeros_from = [&](uint64_t from) {
            for (uint64_t off = from; off < zm.start + kZone; off++)
                if (all[off]) return false;
            return true;
        };
        uint64_t floor = zm.dur_wp;
        bool as_reset = zm.reset_pending && W == zm.start && zi->state == S::kEmpty;
        bool as_finished = zm.finish_pending && W == zm.cap_end && zi->state == S::kFull && data_matches(zm.cap_end);
        bool normal = W >= floor && W <= zm.wp_max && data_matches(W);
        // (b), (c), (d)
        EXPECT_TRUE(as_reset || as_finished || normal)
            << "wp " << W - zm.start << " state " << ZoneStateName(zi->state) << "; durable wp "
            << floor - zm.start << " (" << ZoneStateName(zm.dur_state) << "), max wp " << zm.wp_max - zm.start
            << ", data below wp " << (data_matches(std::max(W, zm.start)) ? "matches" : "DIFFERS")
            << (zm.reset_pending ? ", reset pending" : "") << (zm.finish_pending ? ", finish pending" : "");
        EXPECT_TRUE(zeros_from(W)) << "data past the wp";
        if (zm.dur_state == S::kFull && !zm.reset_pending) {
            EXPECT_EQ(zi->state, S::kFull);
        }
        if (W == zm.start) {
            EXPECT_TRUE(zi->state == S::kEmpty || zi->state == S::kClosed) << ZoneStateName(zi->state);
        }
        // ZDED.
        bool zdev = zi->attrs & kZoneAttrZdev;
        if (!zm.zde_unknown) {
            std::vector<uint8_t> got(kZde);
            ASSERT_TRUE(b.ReadZoneDescExt(z, got.data()).ok());
            if (as_reset) {
                EXPECT_FALSE(zdev);
            } else if (zm.zde_pending && zdev && !zm.dur_zdev) {
                EXPECT_EQ(got, zm.pending_zde);
            } else {
                EXPECT_EQ(zdev, zm.dur_zdev);
                if (zdev) {
                    EXPECT_EQ(got, zm.dur_zde);
                }
            }
        }
    }
    if (deep) {
        // Recovery itself left a consistent image.
        ASSERT_TRUE(b.Close().ok());
        auto img2 = qcow2::Image::Open(BorrowFile(&disk), {.write = false}, nullptr);
        ASSERT_TRUE(img2.ok()) << img2.status().message();
        auto cr = (*img2)->Check(qcow2::RepairMode::kNone);
        ASSERT_TRUE(cr.ok());
        EXPECT_EQ(cr->corruptions, 0u) << "recovery corrupted the image";
    }
}

// expect_ok false: the power may go while opening.
std::unique_ptr<BlockBackend> OpenOn(File* f, bool expect_ok = true) {
    auto img = qcow2::Image::Open(BorrowFile(f), {.write = true}, nullptr);
    if (expect_ok) {
        EXPECT_TRUE(img.ok()) << img.status().message();
    }
    if (!img.ok()) return nullptr;
    auto be = BlockBackend::OpenDriver(std::move(*img));
    if (expect_ok) {
        EXPECT_TRUE(be.ok()) << be.status().message();
    }
    return be.ok() ? std::move(*be) : nullptr;
}

constexpr int kOps = 70;
constexpr CrashMode kModes[] = {CrashMode::kDropUnsynced, CrashMode::kKeepRandomSubset, CrashMode::kTearSectors};
const char* ModeName(CrashMode c) {
    return c == CrashMode::kDropUnsynced ? "drop" : c == CrashMode::kKeepRandomSubset ? "subset" : "tear";
}

// Mutating file operations a complete run of the workload makes (open included).
uint64_t CountOps(uint64_t seed) {
    auto ff = NewFaultFile(CopyOf(Pristine()));
    auto b = OpenOn(ff.get());
    Model m;
    Workload w(seed, *b, m, Mode::kCut);
    RunResult rr = w.Run(kOps);
    EXPECT_FALSE(rr.saw_io_error);
    FaultFileStats st = ff->stats();
    EXPECT_TRUE(b->Close().ok());
    return st.writes + st.syncs + st.truncates + st.punch_holes;
}

uint64_t g_cut_points = 0;

// Workloads per test: many in an optimised build (the whole file takes a few seconds), few in
// an unoptimised sanitizer build (about 100 times slower). QZNS_POWERCUT_SEEDS overrides.
uint64_t Seeds(uint64_t optimised) {
    if (const char* e = getenv("QZNS_POWERCUT_SEEDS")) return std::max<uint64_t>(1, strtoull(e, nullptr, 10));
#if defined(__OPTIMIZE__)
    return optimised;
#else
    return std::max<uint64_t>(1, optimised / 10);
#endif
}

TEST(ZonedPowerCut, EveryCutPointOfSeededWorkloads) {
    auto t0 = std::chrono::steady_clock::now();
    const uint64_t kSeeds = Seeds(40);
    uint64_t explored = 0;
    for (uint64_t seed = 1; seed <= kSeeds; seed++) {
        uint64_t total = CountOps(seed);
        for (uint64_t cut = 0; cut <= total; cut++) {
            CrashMode mode = kModes[(cut + seed) % 3];
            std::string where = Where(seed, cut, ModeName(mode));
            auto ff = NewFaultFile(CopyOf(Pristine()));
            Model m;
            {
                ff->SetCrashPoint(cut);
                auto b = OpenOn(ff.get(), /*expect_ok=*/false);
                if (b) {
                    Workload w(seed, *b, m, Mode::kCut);
                    w.Run(kOps);
                }
                // Power off at the cut (or, past the last op, right now).
                ASSERT_TRUE(ff->SimulateCrash(mode, seed * 7919 + cut).ok());
            }
            auto disk = ff->CloneDurable();
            ASSERT_TRUE(disk.ok());
            CheckRecovered(**disk, m, where, cut % 8 == 0);
            explored++;
            if (HasFailure()) return;
        }
    }
    g_cut_points += explored;
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    printf("[power-cut] %llu cut points over %llu seeded workloads in %.1f s\n",
           static_cast<unsigned long long>(explored), static_cast<unsigned long long>(kSeeds), secs);
    EXPECT_GE(explored, 100 * kSeeds);
}

TEST(ZonedPowerCut, PersistentIoErrorsReachTheCallerNotTheDisk) {
    // The disk stops accepting writes (or syncs, or hole punches) with EIO or ENOSPC at a chosen
    // point; the workload must see an error, and the durable state must be consistent.
    auto t0 = std::chrono::steady_clock::now();
    uint64_t explored = 0;
    const OpKind kinds[] = {OpKind::kWrite, OpKind::kSync, OpKind::kWrite | OpKind::kSync, OpKind::kPunchHole};
    const int errs[] = {EIO, ENOSPC};
    for (uint64_t seed = 101; seed < 101 + Seeds(8); seed++) {
        uint64_t total = CountOps(seed);
        for (uint64_t n = 0; n < total; n += 3) {
            OpKind kind = kinds[(n / 3 + seed) % 4];
            int err = errs[(n / 3) % 2];
            std::string where = Where(seed, n, "fail-after") + " err " + std::to_string(err) + " kinds " +
                                std::to_string(static_cast<uint32_t>(kind));
            auto ff = NewFaultFile(CopyOf(Pristine()));
            Model m;
            RunResult rr;
            {
                auto b = OpenOn(ff.get());
                ASSERT_TRUE(b);
                // Counted from here: FailAfter counts only the chosen kinds.
                ff->FailAfter(n / 2, err, kind);
                Workload w(seed, *b, m, Mode::kCut);
                rr = w.Run(kOps);
                uint64_t failed = ff->stats().failed;
                if (failed > 0 && kind != OpKind::kPunchHole) {
                    EXPECT_TRUE(rr.saw_io_error) << where << ": " << failed << " failed file ops, no error seen";
                }
                ASSERT_TRUE(ff->SimulateCrash(kModes[n % 3], seed + n).ok());
            }
            auto disk = ff->CloneDurable();
            ASSERT_TRUE(disk.ok());
            CheckRecovered(**disk, m, where, false);
            explored++;
            if (HasFailure()) return;
        }
    }
    g_cut_points += explored;
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    printf("[power-cut] %llu persistent-error points in %.1f s\n", static_cast<unsigned long long>(explored), secs);
}

TEST(ZonedPowerCut, SingleIoErrorThenFlushMakesMemoryStateDurable) {
    // One operation fails with EIO/ENOSPC; the caller sees it, flushes again (which succeeds),
    // carries on, and finally loses power: what the last flush covered must all be there.
    auto t0 = std::chrono::steady_clock::now();
    uint64_t explored = 0;
    const OpKind kinds[] = {OpKind::kWrite, OpKind::kSync, OpKind::kWrite | OpKind::kSync, OpKind::kPunchHole};
    for (uint64_t seed = 201; seed < 201 + Seeds(8); seed++) {
        uint64_t total = CountOps(seed);
        for (uint64_t n = 0; n < total; n += 2) {
            OpKind kind = kinds[(n / 2 + seed) % 4];
            int err = (n / 2) % 2 ? ENOSPC : EIO;
            std::string where = Where(seed, n, "fail-once") + " err " + std::to_string(err);
            auto ff = NewFaultFile(CopyOf(Pristine()));
            Model m;
            {
                auto b = OpenOn(ff.get());
                ASSERT_TRUE(b);
                ff->FailAfter(n / 2, err, kind, /*once=*/true);
                Workload w(seed, *b, m, Mode::kFailOnce);
                RunResult rr = w.Run(kOps);
                if (HasFailure()) return;
                if (ff->stats().failed > 0 && kind != OpKind::kPunchHole) {
                    EXPECT_TRUE(rr.saw_io_error) << where;
                }
                BlkResult fr = b->Flush();
            if (!fr.ok()) {  // the injected error hit this flush: it must succeed when retried
                EXPECT_EQ(ff->stats().failed, 1u) << where;
                fr = b->Flush();
            }
            ASSERT_TRUE(fr.ok()) << where << ": " << fr.message();
                m.FullPoint();
                ASSERT_TRUE(ff->SimulateCrash(kModes[n % 3], seed * 31 + n).ok());
            }
            auto disk = ff->CloneDurable();
            ASSERT_TRUE(disk.ok());
            CheckRecovered(**disk, m, where, false);
            // Everything was flushed: the wp must be exactly the in-memory one.
            auto be = OpenOn(disk->get());
            ASSERT_TRUE(be);
            for (uint32_t z = kConv; z < kZones; z++) {
                auto zi = be->GetZone(z);
                ASSERT_TRUE(zi.ok());
                EXPECT_EQ(zi->wp, m.zones[z].wp) << where << " zone " << z;
            }
            ASSERT_TRUE(be->Close().ok());
            explored++;
            if (HasFailure()) return;
        }
    }
    g_cut_points += explored;
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    printf("[power-cut] %llu single-error points in %.1f s\n", static_cast<unsigned long long>(explored), secs);
}

TEST(ZonedPowerCut, Summary) {
    printf("[power-cut] %llu crash/error points explored in total\n", static_cast<unsigned long long>(g_cut_points));
}

}  // namespace
}  // namespace qzns
