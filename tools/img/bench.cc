// qzns-img bench: qemu-img bench's idiom over the block backend — N requests of one size, with
// `depth` of them in flight (a pool of `depth` threads, each keeping one request outstanding),
// sequential or random. --zoned makes writes zone-aware: each worker fills its own zone at the
// write pointer (seq), or every worker appends to the current zone (append); zones that are full
// are reset before they are used again.
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "block/block-backend.h"
#include "tools/img/img-common.h"
#include "util/mutex.h"
#include "util/options.h"
#include "util/size.h"

namespace qzns::img {
namespace {

enum class ZonedMode { kNone, kSeq, kAppend };

struct BenchOptions {
    bool write = false;
    uint32_t depth = 64;
    uint64_t size = 4096;
    uint64_t count = 75000;
    bool direct = false;  // -t none
    uint64_t offset = 0;
    uint64_t step = 0;  // 0: the request size
    bool random = false;
    ZonedMode zoned = ZonedMode::kNone;
    std::string format;
    uint64_t flush_interval = 0;
    bool quiet = false;
    bool persist_zones = true;  // --persist-zones=off: measures the cost of zone persistence
};

struct Buffer {
    uint8_t* p = nullptr;
    explicit Buffer(uint64_t len) {
        if (posix_memalign(reinterpret_cast<void**>(&p), 4096, std::max<uint64_t>(len, 4096)) != 0) p = nullptr;
        if (p) memset(p, 0xa5, len);
    }
    ~Buffer() { free(p); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
};

class Bench {
public:
    Bench(BlockBackend& b, const BenchOptions& o) : b_(b), o_(o) {}

    // Returns the first error, if any.
    Status Run() {
        size_t workers = std::max<uint32_t>(1, o_.depth);
        {
            // No worker runs yet; the lock keeps every access to the zone cursors under it.
            util::MutexLock lk(mu_);
            if (o_.zoned == ZonedMode::kSeq) {
                // One zone per worker, never two workers in a zone (writes must arrive in wp order).
                uint32_t seq = b_.nr_zones() - b_.nr_conv_zones();
                uint32_t limit = b_.max_active_zones() ? b_.max_active_zones() : b_.max_open_zones();
                workers = std::min<size_t>({workers, seq, limit ? limit : seq});
                next_zone_ = b_.nr_conv_zones();
            } else if (o_.zoned == ZonedMode::kAppend) {
                cur_zone_ = b_.nr_conv_zones();
            }
        }
        workers = std::min<size_t>(workers, std::max<uint64_t>(o_.count, 1));
        std::vector<std::thread> th;
        for (size_t i = 0; i < workers; i++) th.emplace_back([this, i] { Worker(i); });
        for (auto& t : th) t.join();
        Status error;
        {
            util::MutexLock lk(mu_);
            error = error_;
        }
        if (error.ok() && o_.write) {
            BlkResult r = b_.Flush();
            if (!r.ok()) return Status::Error(EIO, "flush failed: " + r.message());
        }
        return error;
    }

    uint64_t resets() const { return resets_; }

private:
    void SetError(const std::string& msg) {
        util::MutexLock lk(mu_);
        if (error_.ok()) error_ = Status::Error(EIO, msg);
        stop_ = true;
    }

    // Plain requests: the i-th request's offset (qemu-img bench wraps at the end of the image).
    uint64_t OffsetOf(uint64_t i, std::mt19937_64& rng) {
        uint64_t size = b_.size();
        uint64_t room = size > o_.size ? size - o_.size : 0;
        if (o_.random) {
            uint64_t slots = room / 512 + 1;
            return rng() % slots * 512;
        }
        uint64_t step = o_.step ? o_.step : o_.size;
        uint64_t span = room + 1 > o_.offset ? room + 1 - o_.offset : 1;
        return o_.offset + (i * step) % span;
    }

    bool Take() {
        uint64_t i = issued_.fetch_add(1);
        return i < o_.count && !stop_;
    }

    void Worker(size_t idx) {
        Buffer buf(o_.size);
        if (!buf.p) return SetError("out of memory");
        std::mt19937_64 rng(0x5eed + idx);
        if (o_.zoned == ZonedMode::kSeq && o_.write) return SeqZoneWorker(buf.p);
        if (o_.zoned == ZonedMode::kAppend && o_.write) return AppendWorker(buf.p);
        while (true) {
            uint64_t i = issued_.fetch_add(1);
            if (i >= o_.count || stop_) return;
            uint64_t off = OffsetOf(i, rng);
            BlkResult r = o_.write ? b_.Write(off, buf.p, o_.size, false) : b_.Read(off, buf.p, o_.size);
            if (!r.ok()) return SetError(std::string(o_.write ? "write" : "read") + " at offset " +
                                         std::to_string(off) + " failed: " + r.message());
            MaybeFlush();
        }
    }

    void MaybeFlush() {
        if (!o_.flush_interval) return;
        uint64_t done = completed_.fetch_add(1) + 1;
        if (done % o_.flush_interval == 0) {
            BlkResult r = b_.Flush();
            if (!r.ok()) SetError("flush failed: " + r.message());
        }
    }

    // Hands out the next sequential zone, reset first when it holds data.
    bool ClaimZone(uint32_t* z) {
        util::MutexLock lk(mu_);
        uint32_t first = b_.nr_conv_zones(), n = b_.nr_zones();
        for (uint32_t tries = 0; tries < n - first; tries++) {
            uint32_t cand = next_zone_;
            next_zone_ = next_zone_ + 1 >= n ? first : next_zone_ + 1;
            if (busy_.size() < n) busy_.resize(n, false);
            if (busy_[cand]) continue;
            auto zi = b_.GetZone(cand);
            if (!zi.ok()) continue;
            if (zi->state == ZoneState::kReadOnly || zi->state == ZoneState::kOffline) continue;
            if (zi->state != ZoneState::kEmpty) {
                BlkResult r = b_.ZoneMgmt(ZoneMgmtOp::kReset, zi->start, false);
                if (!r.ok()) continue;
                resets_++;
            }
            busy_[cand] = true;
            *z = cand;
            return true;
        }
        return false;
    }

    void ReleaseZone(uint32_t z) {
        util::MutexLock lk(mu_);
        busy_[z] = false;
    }

    void SeqZoneWorker(uint8_t* buf) {
        uint32_t z = 0;
        if (!ClaimZone(&z)) return SetError("no writable sequential zone is free");
        auto zi = b_.GetZone(z);
        uint64_t wp = zi.ok() ? zi->wp : 0, cap_end = zi.ok() ? zi->start + zi->cap : 0;
        while (Take()) {
            if (wp + o_.size > cap_end) {
                // Leave the zone full (finish it when the request size does not divide the
                // capacity) and move to the next one.
                if (wp < cap_end) (void)b_.ZoneMgmt(ZoneMgmtOp::kFinish, z * b_.zone_size(), false);
                ReleaseZone(z);
                if (!ClaimZone(&z)) return SetError("no writable sequential zone is free");
                zi = b_.GetZone(z);
                if (!zi.ok()) return SetError(zi.status().message());
                wp = zi->wp;
                cap_end = zi->start + zi->cap;
                if (wp + o_.size > cap_end) return SetError("the request size exceeds the zone capacity");
            }
            BlkResult r = b_.Write(wp, buf, o_.size, false);
            if (!r.ok()) return SetError("write at offset " + std::to_string(wp) + " failed: " + r.message());
            wp += o_.size;
            MaybeFlush();
        }
        ReleaseZone(z);
    }

    void AppendWorker(uint8_t* buf) {
        while (Take()) {
            for (int attempt = 0;; attempt++) {
                uint32_t z;
                uint64_t gen;
                {
                    util::MutexLock lk(mu_);
                    z = cur_zone_;
                    gen = zone_gen_;
                }
                BlkResult r = b_.Append(uint64_t{z} * b_.zone_size(), buf, o_.size, false);
                if (r.ok()) break;
                bool full = r.zone_error == ZoneError::kZoneIsFull || r.zone_error == ZoneError::kZoneBoundaryError;
                if (!full || attempt > 2 * static_cast<int>(b_.nr_zones()))
                    return SetError("zone append to zone " + std::to_string(z) + " failed: " + r.message());
                NextAppendZone(gen);
            }
            MaybeFlush();
        }
    }

    // Moves every appender to the next zone (once per generation), resetting it if needed.
    void NextAppendZone(uint64_t seen_gen) {
        util::MutexLock lk(mu_);
        if (zone_gen_ != seen_gen) return;
        uint32_t first = b_.nr_conv_zones(), n = b_.nr_zones();
        auto zi = b_.GetZone(cur_zone_);
        if (zi.ok() && zi->state != ZoneState::kFull && zi->state != ZoneState::kReadOnly &&
            zi->state != ZoneState::kOffline)
            (void)b_.ZoneMgmt(ZoneMgmtOp::kFinish, zi->start, false);
        for (uint32_t tries = 0; tries < n - first; tries++) {
            cur_zone_ = cur_zone_ + 1 >= n ? first : cur_zone_ + 1;
            auto nz = b_.GetZone(cur_zone_);
            if (!nz.ok() || nz->state == ZoneState::kReadOnly || nz->state == ZoneState::kOffline) continue;
            if (nz->state != ZoneState::kEmpty) {
                if (!b_.ZoneMgmt(ZoneMgmtOp::kReset, nz->start, false).ok()) continue;
                resets_++;
            }
            break;
        }
        zone_gen_++;
    }

    BlockBackend& b_;
    const BenchOptions& o_;
    std::atomic<uint64_t> issued_{0}, completed_{0};
    std::atomic<bool> stop_{false};
    std::atomic<uint64_t> resets_{0};
    util::Mutex mu_;
    Status error_ GUARDED_BY(mu_);
    uint32_t next_zone_ GUARDED_BY(mu_) = 0;  // seq mode: where ClaimZone looks next
    std::vector<bool> busy_ GUARDED_BY(mu_);  // seq mode: zones claimed by a worker
    uint32_t cur_zone_ GUARDED_BY(mu_) = 0;   // append mode: the zone every worker appends to
    uint64_t zone_gen_ GUARDED_BY(mu_) = 0;   // append mode: bumped on each move to a new zone
};

Result<uint64_t> Num(const std::string& opt, const std::string& v, bool size) {
    auto r = size ? ParseSize(v) : ParseUint(v);
    if (!r.ok()) return Status::Error(EINVAL, "Invalid " + opt + " specified: '" + v + "'");
    return *r;
}

}  // namespace

int CmdBench(Args& a) {
    BenchOptions o;
    while (true) {
        auto n = a.Next({"c", "d", "f", "o", "s", "S", "t", "pattern", "zoned", "flush-interval",
                          "persist-zones"});
        if (!n.ok()) return Fail(n.status());
        if (n->empty()) break;
        const std::string& v = a.value();
        Result<uint64_t> x = uint64_t{0};
        if (*n == "w") o.write = true;
        else if (*n == "q") o.quiet = true;
        else if (*n == "f") o.format = v;
        else if (*n == "c") {
            if (!(x = Num("request count", v, false)).ok()) return Fail(x.status());
            o.count = *x;
        } else if (*n == "d") {
            if (!(x = Num("queue depth", v, false)).ok() || *x == 0 || *x > 4096)
                return Fail("Invalid queue depth specified: '" + v + "' (1 to 4096)");
            o.depth = static_cast<uint32_t>(*x);
        } else if (*n == "s") {
            if (!(x = Num("buffer size", v, true)).ok() || *x == 0 || *x > (1ull << 30))
                return Fail("Invalid buffer size specified: '" + v + "'");
            o.size = *x;
        } else if (*n == "o") {
            if (!(x = Num("offset", v, true)).ok()) return Fail(x.status());
            o.offset = *x;
        } else if (*n == "S") {
            if (!(x = Num("step size", v, true)).ok()) return Fail(x.status());
            o.step = *x;
        } else if (*n == "flush-interval") {
            if (!(x = Num("flush interval", v, false)).ok()) return Fail(x.status());
            o.flush_interval = *x;
        } else if (*n == "t") {
            if (v == "none") o.direct = true;
            else if (v == "writeback") o.direct = false;
            else return Fail("Invalid cache mode '" + v + "' (none or writeback)");
        } else if (*n == "pattern") {
            if (v == "seq") o.random = false;
            else if (v == "rand") o.random = true;
            else return Fail("--pattern must be seq or rand");
        } else if (*n == "persist-zones") {
            if (v == "on") o.persist_zones = true;
            else if (v == "off") o.persist_zones = false;
            else return Fail("--persist-zones must be on or off");
        } else if (*n == "zoned") {
            if (v == "seq") o.zoned = ZonedMode::kSeq;
            else if (v == "append") o.zoned = ZonedMode::kAppend;
            else return Fail("--zoned must be seq or append");
        } else {
            return Fail("bench: unknown option '" + *n + "'");
        }
    }
    const auto& pos = a.positional();
    if (pos.size() != 1)
        return Fail("usage: bench [-w] [-d depth] [-s size] [-c count] [-t none|writeback] [-o offset] [-S step] "
                    "[--pattern=seq|rand] [--zoned=seq|append] [--flush-interval=N] [--persist-zones=on|off] "
                    "[-f FMT] FILE");
    if (o.size % 512) return Fail("the buffer size must be a multiple of 512 bytes");

    BlockBackendOptions bo;
    bo.filename = pos[0];
    bo.format = o.format;
    bo.read_only = !o.write;
    bo.direct = o.direct;
    bo.persist_zones = o.persist_zones;
    auto be = BlockBackend::Open(bo);
    if (!be.ok()) return Fail(be.status().Prefix("Could not open '" + pos[0] + "'"));
    BlockBackend& b = **be;
    if (o.zoned != ZonedMode::kNone) {
        if (!b.is_zoned()) return Fail("--zoned needs a zoned image");
        if (o.zoned == ZonedMode::kAppend && b.profile() == ZonedProfile::kZbc)
            return Fail("--zoned=append: the zbc profile has no zone append");
        if (o.zoned == ZonedMode::kAppend && b.max_append_bytes() && o.size > b.max_append_bytes())
            return Fail("the buffer size exceeds the image's max append size (" + std::to_string(b.max_append_bytes()) +
                        " bytes)");
        if (o.size > b.zone_capacity()) return Fail("the buffer size exceeds the zone capacity");
    }
    if (o.size > b.size()) return Fail("the buffer size exceeds the image size");

    const char* kind = o.write ? (o.zoned == ZonedMode::kAppend ? "zone append" : "write") : "read";
    if (o.zoned != ZonedMode::kNone && o.write) {
        printf("Sending %llu %s requests, %llu bytes each, %u in parallel (zone-aware: %s, %u zones of %llu bytes)\n",
               static_cast<unsigned long long>(o.count), kind, static_cast<unsigned long long>(o.size), o.depth,
               o.zoned == ZonedMode::kSeq ? "sequential writes at the write pointer" : "zone append",
               b.nr_zones() - b.nr_conv_zones(), static_cast<unsigned long long>(b.zone_size()));
    } else {
        printf("Sending %llu %s requests, %llu bytes each, %u in parallel (starting at offset %llu, step size %llu)\n",
               static_cast<unsigned long long>(o.count), kind, static_cast<unsigned long long>(o.size), o.depth,
               static_cast<unsigned long long>(o.offset),
               static_cast<unsigned long long>(o.random ? 0 : (o.step ? o.step : o.size)));
    }
    fflush(stdout);
    Bench bench(b, o);
    auto t0 = std::chrono::steady_clock::now();
    Status st = bench.Run();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    Status cst = b.Close();
    if (!st.ok()) return Fail(st);
    if (!cst.ok()) return Fail(cst);
    if (bench.resets()) printf("Reset %llu full zones.\n", static_cast<unsigned long long>(bench.resets()));
    printf("Run completed in %3.3f seconds.\n", secs);
    return 0;
}

}  // namespace qzns::img
