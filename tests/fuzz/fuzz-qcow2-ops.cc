// libFuzzer target: the input drives writes, zeroing, discards, flushes, zone word updates,
// clean reopens and simulated power cuts on a small image (cluster size, refcount width and
// zoning chosen by the first bytes). After every reopen `check` must find no corruption and
// the data must match a shadow model (everything after a clean close; what was flushed before
// a power cut). Any mismatch aborts, which libFuzzer reports as a crash.
//
// Speed: the shadow model is as large as the disk and is compared after every reopen, so its
// buffers are reused across inputs (fresh 512 KiB vectors per input cost more in page faults
// and ASan's per-allocation mmap than the image work) and the oracle code is built without
// coverage instrumentation (kOracle): tracing its byte loops made every compare a libFuzzer
// callback and filled the comparison tables with the model's bytes instead of the engine's.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "block/file-fault.h"
#include "block/qcow2/qcow2.h"
#include "block/zoned/zone-word.h"

using namespace qzns;
using namespace qzns::qcow2;

namespace {

constexpr uint64_t kZoneSize = 64 * 1024;
#define kOracle __attribute__((no_sanitize("coverage")))

[[noreturn]] void Die(const char* what, const std::string& detail) {
    fprintf(stderr, "fuzz-qcow2-ops: %s: %s\n", what, detail.c_str());
    abort();
}

struct Input {
    const uint8_t* p;
    size_t n;
    uint8_t U8() {
        if (!n) return 0;
        n--;
        return *p++;
    }
    uint32_t U16() { return U8() | uint32_t{U8()} << 8; }
};

struct Model {
    std::vector<uint8_t> cur, cur_mz, dur, dur_mz, loose;
    std::vector<uint64_t> zw_cur, zw_dur;
    std::vector<uint8_t> zw_loose;
    std::vector<uint8_t> got;  // Verify's read buffer
    // A fresh model of a zeroed disk, keeping the buffers' capacity.
    void Reset(uint64_t size) {
        for (auto* v : {&cur, &cur_mz, &loose}) v->assign(size, 0);
        zw_cur.clear();
        zw_loose.clear();
    }
    void Flushed() {
        dur = cur;
        dur_mz = cur_mz;
        zw_dur = zw_cur;
        std::fill(loose.begin(), loose.end(), 0);
        std::fill(zw_loose.begin(), zw_loose.end(), 0);
    }
};

std::unique_ptr<Image> OpenOrDie(File* f, bool write) {
    Image::OpenFlags fl;
    fl.write = write;
    auto r = Image::Open(BorrowFile(f), fl, nullptr);
    if (!r.ok()) Die("open", r.status().message());
    return std::move(*r);
}

kOracle void Mismatch(const std::vector<uint8_t>& got, const Model& m, size_t from, size_t to, bool after_crash) {
    const auto& want = after_crash ? m.dur : m.cur;
    const auto& mz = after_crash ? m.dur_mz : m.cur_mz;
    for (size_t i = from; i < to; i++) {
        if (after_crash && m.loose[i]) continue;
        if (got[i] != want[i] && !(mz[i] && got[i] == 0))
            Die("data mismatch", "byte " + std::to_string(i) + " reads " + std::to_string(got[i]) +
                                     " expected " + std::to_string(want[i]));
    }
}

kOracle void Pattern(std::vector<uint8_t>& buf, uint64_t len, uint8_t fill) {
    buf.resize(len);
    for (uint64_t i = 0; i < len; i++) buf[i] = static_cast<uint8_t>(fill + i * 13 + (i >> 9)) | 1;
}

// Check clean of corruption, and compare with the model (only durable bytes after a crash).
kOracle void Verify(Image& img, Model& m, bool after_crash) {
    auto chk = img.Check(RepairMode::kNone);
    if (!chk.ok()) Die("check failed", chk.status().message());
    if (chk->corruptions) {
        std::string all;
        for (auto& s : chk->messages) all += s + "; ";
        Die("corruption", all);
    }
    if (!after_crash && chk->leaks) Die("leak after a clean close", std::to_string(chk->leaks));
    std::vector<uint8_t>& got = m.got;
    got.resize(m.cur.size());
    if (!img.Read(0, got.data(), got.size()).ok()) Die("read", "");
    const auto& want = after_crash ? m.dur : m.cur;
    // Byte by byte (zeroed and loose bytes) only where a 4 KiB block differs from the model.
    for (size_t at = 0; at < got.size(); at += 4096) {
        size_t n = std::min<size_t>(4096, got.size() - at);
        if (std::memcmp(&got[at], &want[at], n) != 0) Mismatch(got, m, at, at + n, after_crash);
    }
    if (!m.zw_cur.empty()) {
        std::vector<uint64_t> w(m.zw_cur.size());
        if (!img.ReadZoneWords(0, static_cast<uint32_t>(w.size()), w.data()).ok()) Die("zone words", "");
        for (size_t z = 0; z < w.size(); z++) {
            if (after_crash && m.zw_loose[z]) continue;
            if (w[z] != (after_crash ? m.zw_dur[z] : m.zw_cur[z])) Die("zone word mismatch", std::to_string(z));
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Input in{data, size};
    uint8_t cfg = in.U8();
    CreateOptions co;
    co.cluster_size = 512u << (cfg % 8);  // 512 .. 64K
    co.refcount_bits = 1u << ((cfg >> 3) % 7);
    bool zoned = cfg & 0x80;
    co.size = 512 * 1024;
    uint32_t nr_zones = static_cast<uint32_t>(co.size / kZoneSize);
    if (zoned) {
        ZonedGeometry g;
        g.zone_size = kZoneSize;
        g.nr_conv_zones = 1;
        co.zoned = g;
    }
    auto ff = NewFaultFile(NewMemFile());
    if (Status st = Create(BorrowFile(ff.get()), co); !st.ok()) Die("create", st.message());
    if (!ff->Sync().ok()) Die("sync", "");

    static Model& m = *new Model();
    m.Reset(co.size);
    for (uint32_t z = 0; z < (zoned ? nr_zones : 0); z++) {
        uint64_t start = z * (kZoneSize / 512);
        m.zw_cur.push_back(z == 0 ? ZoneWord::Make(ZoneState::kNotWritePointer, ZoneType::kConventional, 0, start).raw
                                  : ZoneWord::Make(ZoneState::kEmpty, ZoneType::kSeqWriteRequired, 0, start).raw);
    }
    m.zw_loose.assign(m.zw_cur.size(), 0);
    m.Flushed();

    auto img = OpenOrDie(ff.get(), true);
    static std::vector<uint8_t>& buf = *new std::vector<uint8_t>();
    for (int ops = 0; in.n && ops < 64; ops++) {
        uint8_t kind = in.U8() % 8;
        uint64_t off = (uint64_t{in.U16()} * 8) % co.size;
        uint64_t len = 1 + (uint64_t{in.U16()} % (3 * co.cluster_size));
        len = std::min(len, co.size - off);
        uint8_t fill = in.U8();
        Status st;
        switch (kind) {
        case 0:
        case 1:
            Pattern(buf, len, fill);
            st = img->Write(off, buf.data(), len);
            std::memcpy(&m.cur[off], buf.data(), len);
            std::memset(&m.cur_mz[off], 0, len);
            std::memset(&m.loose[off], 1, len);
            break;
        case 2:
            st = img->WriteZeroes(off, len, fill & 1);
            std::memset(&m.cur[off], 0, len);
            std::memset(&m.cur_mz[off], 0, len);
            std::memset(&m.loose[off], 1, len);
            break;
        case 3:
            st = img->Discard(off, len);
            std::memset(&m.cur_mz[off], 1, len);
            std::memset(&m.loose[off], 1, len);
            break;
        case 4:
            st = img->Flush();
            if (st.ok()) m.Flushed();
            break;
        case 5: {
            if (!zoned) break;
            uint32_t z = 1 + fill % (nr_zones - 1);
            uint64_t start = z * (kZoneSize / 512), zs = kZoneSize / 512;
            uint64_t w = (off & 1) ? ZoneWord::Make(ZoneState::kClosed, ZoneType::kSeqWriteRequired, 0,
                                                    start + 1 + off % (zs - 1)).raw
                                   : ZoneWord::Make(ZoneState::kFull, ZoneType::kSeqWriteRequired, 0, start + zs).raw;
            st = img->WriteZoneWords(z, 1, &w);
            m.zw_cur[z] = w;
            m.zw_loose[z] = 1;
            break;
        }
        case 6: {  // clean close and reopen
            if (Status c = img->Close(); !c.ok()) Die("close", c.message());
            img.reset();
            m.Flushed();
            img = OpenOrDie(ff.get(), false);
            Verify(*img, m, false);
            img = OpenOrDie(ff.get(), true);
            break;
        }
        case 7: {  // power cut after a few more file operations
            ff->SetCrashPoint(fill % 8);
            buf.assign(len, fill | 1);
            std::memset(&m.loose[off], 1, len);
            (void)img->Write(off, buf.data(), len);
            (void)img->Flush();  // may or may not get through; not counted as a flush
            if (!ff->SimulateCrash(static_cast<CrashMode>(fill % 3), fill).ok()) Die("crash", "");
            img.reset();
            ff->PowerOn();
            {
                auto ro = OpenOrDie(ff.get(), false);
                Verify(*ro, m, true);
            }
            img = OpenOrDie(ff.get(), true);
            if (auto r = img->Check(RepairMode::kLeaks); !r.ok()) Die("repair leaks", r.status().message());
            // The model restarts from what the disk now holds.
            if (!img->Read(0, m.cur.data(), m.cur.size()).ok()) Die("read", "");
            std::fill(m.cur_mz.begin(), m.cur_mz.end(), 0);
            if (zoned && !img->ReadZoneWords(0, nr_zones, m.zw_cur.data()).ok()) Die("zone words", "");
            if (!img->Flush().ok()) Die("flush after recovery", "");
            m.Flushed();
            break;
        }
        }
        if (!st.ok()) Die("operation failed", st.message());
    }
    if (Status c = img->Close(); !c.ok()) Die("final close", c.message());
    img = OpenOrDie(ff.get(), false);
    m.Flushed();
    Verify(*img, m, false);
    return 0;
}
