// Several threads writing one qcow2 image at once (BlockDriver promises every method is safe to
// call concurrently): overlapping writes to a shared region, private regions per thread, with
// discards, zeroing and flushes in between. Every sector must end up as one of the outcomes the
// operations allow, and the image must check clean.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>
#include <vector>

#include "block/file-fault.h"
#include "block/qcow2/qcow2.h"
#include "util/mutex.h"

namespace qzns::qcow2 {
namespace {

#define ASSERT_OK(expr)                                          \
    do {                                                         \
        ::qzns::Status st_ = (expr);                             \
        ASSERT_TRUE(st_.ok()) << #expr << ": " << st_.message(); \
    } while (0)

constexpr int kThreads = 4;
constexpr uint64_t kShared = 1 << 20;   // [0, kShared): everyone
constexpr uint64_t kPrivate = 1 << 20;  // then one region per thread
constexpr uint64_t kSize = kShared + kThreads * kPrivate;
constexpr uint64_t kMagic = 0x5157;

uint64_t Mix(uint64_t a, uint64_t b) {
    uint64_t x = a * 0x9e3779b97f4a7c15ull ^ (b + 0x7f4a7c15);
    x ^= x >> 31;
    return x * 0xbf58476d1ce4e5b9ull;
}

// Each sector a write makes names its writer, the write's sequence number and its own guest
// sector, and the rest is derived from those: a sector read back is valid or visibly not.
void StampSector(uint8_t* s, uint64_t thread, uint64_t seq, uint64_t sector) {
    uint64_t w[64];
    w[0] = kMagic << 48 | thread << 40 | seq;
    w[1] = sector;
    for (int i = 2; i < 64; i++) w[i] = Mix(w[0] + i, sector);
    std::memcpy(s, w, 512);
}

struct WriteRecord {
    uint64_t off, len;
};

struct ThreadLog {
    std::vector<WriteRecord> writes;  // by seq
    // Private region: what each sector must read (seq + 1, or 0 for zeros).
    std::vector<uint64_t> private_last;
};

class TmpFile {
public:
    TmpFile() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "qcow2-conc-XXXXXX").string();
        if (mkdtemp(tmpl.data())) dir_ = tmpl;
    }
    ~TmpFile() {
        std::error_code ec;
        if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
    }
    std::string path() const { return dir_ + "/c.qcow2"; }

private:
    std::string dir_;
};

std::unique_ptr<Image> OpenOn(File* f, bool write) {
    Image::OpenFlags fl;
    fl.write = write;
    auto r = Image::Open(BorrowFile(f), fl, nullptr);
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

// Checks every sector against the logs; returns the number of bad sectors.
uint64_t CountBadSectors(const std::vector<uint8_t>& disk, const std::vector<ThreadLog>& logs, std::string* first) {
    uint64_t bad = 0;
    uint8_t want[512];
    for (uint64_t s = 0; s < kSize / 512; s++) {
        const uint8_t* got = &disk[s * 512];
        uint64_t off = s * 512;
        std::string why;
        if (off >= kShared) {
            uint64_t t = (off - kShared) / kPrivate;
            uint64_t idx = (off - kShared - t * kPrivate) / 512;
            uint64_t last = logs[t].private_last[idx];
            if (last == 0) {
                if (std::any_of(got, got + 512, [](uint8_t b) { return b != 0; })) why = "private sector not zero";
            } else {
                StampSector(want, t, last - 1, s);
                if (std::memcmp(want, got, 512) != 0) why = "private sector is not its last write";
            }
        } else if (std::any_of(got, got + 512, [](uint8_t b) { return b != 0; })) {
            uint64_t w0;
            std::memcpy(&w0, got, 8);
            uint64_t t = (w0 >> 40) & 0xff, seq = w0 & ((1ull << 40) - 1);
            if (w0 >> 48 != kMagic || t >= logs.size() || seq >= logs[t].writes.size()) {
                why = "shared sector has no valid stamp";
            } else {
                const WriteRecord& w = logs[t].writes[seq];
                StampSector(want, t, seq, s);
                if (off < w.off || off >= w.off + w.len) why = "shared sector stamped by a write that did not cover it";
                else if (std::memcmp(want, got, 512) != 0) why = "shared sector torn";
            }
        }
        if (!why.empty()) {
            if (!bad && first) *first = why + " at sector " + std::to_string(s);
            bad++;
        }
    }
    return bad;
}

TEST(Qcow2Concurrency, ParallelWritersLeaveAValidConsistentImage) {
    TmpFile tmp;
    FileOpenFlags ff;
    ff.write = ff.create = true;
    ff.lock = false;
    auto file = OpenPosixFile(tmp.path(), ff);
    ASSERT_TRUE(file.ok()) << file.status().message();
    File* f = file->get();
    CreateOptions co;
    co.size = kSize;
    co.cluster_size = 4096;  // many allocations, many L2 and refcount updates
    co.refcount_bits = 4;
    ASSERT_OK(Create(BorrowFile(f), co));
    auto img = OpenOn(f, true);
    ASSERT_TRUE(img);

    std::vector<ThreadLog> logs(kThreads);
    std::atomic<int> failures{0};
    util::Mutex err_mu;  // guards first_error (a local: GUARDED_BY takes members only)
    std::string first_error;
    auto worker = [&](int t) {
        std::mt19937_64 rng(t + 1);
        ThreadLog& log = logs[t];
        log.private_last.assign(kPrivate / 512, 0);
        std::vector<uint8_t> buf;
        auto fail = [&](const std::string& what, const Status& st) {
            failures++;
            util::MutexLock lk(err_mu);
            if (first_error.empty()) first_error = what + ": " + st.message();
        };
        for (int i = 0; i < 300; i++) {
            bool shared = rng() % 2;
            uint64_t base = shared ? 0 : kShared + t * kPrivate;
            uint64_t region = shared ? kShared : kPrivate;
            // Sector-aligned ranges of up to 3 clusters, often crossing cluster boundaries.
            uint64_t sectors = 1 + rng() % 24;
            uint64_t off = base + (rng() % (region / 512 - sectors + 1)) * 512;
            uint64_t len = sectors * 512;
            int kind = static_cast<int>(rng() % 10);
            if (kind < 7) {
                uint64_t seq = log.writes.size();
                log.writes.push_back({off, len});
                buf.resize(len);
                for (uint64_t s = 0; s < sectors; s++) StampSector(&buf[s * 512], t, seq, off / 512 + s);
                Status st = img->Write(off, buf.data(), len);
                if (!st.ok()) fail("write", st);
                if (!shared)
                    for (uint64_t s = 0; s < sectors; s++) log.private_last[(off - base) / 512 + s] = seq + 1;
            } else if (kind < 9) {
                Status st = img->WriteZeroes(off, len, rng() % 2);
                if (!st.ok()) fail("write zeroes", st);
                if (!shared)
                    for (uint64_t s = 0; s < sectors; s++) log.private_last[(off - base) / 512 + s] = 0;
            } else if (shared) {
                Status st = img->Discard(off, len);  // shared sectors may read zero anyway
                if (!st.ok()) fail("discard", st);
            } else {
                Status st = img->Flush();
                if (!st.ok()) fail("flush", st);
            }
        }
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; t++) threads.emplace_back(worker, t);
    for (auto& th : threads) th.join();
    ASSERT_EQ(failures.load(), 0) << first_error;

    std::vector<uint8_t> disk(kSize);
    ASSERT_OK(img->Read(0, disk.data(), disk.size()));
    std::string why;
    EXPECT_EQ(CountBadSectors(disk, logs, &why), 0u) << why;
    ASSERT_NO_FATAL_FAILURE(ExpectClean(*img));
    ASSERT_OK(img->Close());

    img = OpenOn(f, false);
    ASSERT_TRUE(img);
    std::vector<uint8_t> again(kSize);
    ASSERT_OK(img->Read(0, again.data(), again.size()));
    EXPECT_TRUE(again == disk) << "content changed across close and reopen";
    ASSERT_NO_FATAL_FAILURE(ExpectClean(*img));
}

// Readers racing allocating writers to the same clusters see old or new sectors, never others.
TEST(Qcow2Concurrency, ReadersDuringAllocatingWritesSeeOldOrNew) {
    TmpFile tmp;
    FileOpenFlags ff;
    ff.write = ff.create = true;
    ff.lock = false;
    auto file = OpenPosixFile(tmp.path(), ff);
    ASSERT_TRUE(file.ok()) << file.status().message();
    CreateOptions co;
    co.size = 4 << 20;
    co.cluster_size = 65536;
    ASSERT_OK(Create(BorrowFile(file->get()), co));
    auto img = OpenOn(file->get(), true);
    ASSERT_TRUE(img);
    std::atomic<bool> done{false};
    std::atomic<uint64_t> bad{0};
    std::thread writer([&] {
        std::vector<uint8_t> buf(3 * 4096);
        for (uint64_t i = 0; i < 60; i++) {
            uint64_t off = i * 65536 + 4096 * (i % 13);
            for (uint64_t s = 0; s < buf.size() / 512; s++) StampSector(&buf[s * 512], 0, 0, off / 512 + s);
            if (!img->Write(off, buf.data(), buf.size()).ok()) bad++;
        }
        done = true;
    });
    std::thread reader([&] {
        std::vector<uint8_t> got(65536);
        uint8_t want[512];
        while (!done) {
            for (uint64_t c = 0; c < 60; c++) {
                if (!img->Read(c * 65536, got.data(), got.size()).ok()) bad++;
                for (uint64_t s = 0; s < 128; s++) {
                    const uint8_t* p = &got[s * 512];
                    if (std::all_of(p, p + 512, [](uint8_t b) { return b == 0; })) continue;
                    StampSector(want, 0, 0, c * 128 + s);
                    if (std::memcmp(p, want, 512) != 0) bad++;
                }
            }
        }
    });
    writer.join();
    reader.join();
    EXPECT_EQ(bad.load(), 0u);
    ASSERT_NO_FATAL_FAILURE(ExpectClean(*img));
}

}  // namespace
}  // namespace qzns::qcow2
