// qzns-img bench: qemu-img bench's idiom over the block backend — N requests of one size, with
// `depth` of them in flight through the asynchronous interface (BlockBackend::Submit): one
// thread submits, completions come back from the I/O engine. Sequential or random. --zoned makes
// writes zone-aware: one sequential stream at the write pointer that moves from zone to zone
// (seq), or every request appended to the current zone (append); zones that hold data are reset
// before they are used again.
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <memory>
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
    AioMode aio = AioMode::kAuto;
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
        size_t depth = std::min<uint64_t>(std::max<uint32_t>(1, o_.depth), std::max<uint64_t>(o_.count, 1));
        std::vector<std::unique_ptr<Slot>> slots;
        for (size_t i = 0; i < depth; i++) {
            slots.push_back(std::make_unique<Slot>(o_.size));
            if (!slots.back()->buf.p) return Status::Error(ENOMEM, "out of memory");
            slots.back()->bench = this;
        }
        if (o_.zoned != ZonedMode::kNone && o_.write) {
            zone_ = b_.nr_conv_zones() - 1;  // the first claim moves to the first sequential zone
            if (o_.zoned == ZonedMode::kSeq) {
                cursor_ = end_ = 0;
            } else if (!NextZone()) {
                return Status::Error(ENOSPC, "no writable sequential zone is free");
            }
        }
        size_t inflight = 0;
        for (auto& s : slots)
            if (Issue(s.get(), false)) inflight++;
        while (inflight > 0) {
            Slot* done;
            {
                util::MutexLock lk(mu_);
                while (!done_) cv_.Wait(mu_);
                done = done_;
                done_ = nullptr;
            }
            while (done) {
                Slot* s = done;
                done = s->next_done;
                inflight--;
                bool retry = false;
                if (!Check(s, &retry)) continue;
                if (Issue(s, retry)) inflight++;
            }
        }
        if (error_.ok() && o_.write) {
            BlkResult r = b_.Flush();
            if (!r.ok()) return Status::Error(EIO, "flush failed: " + r.message());
        }
        return error_;
    }

    uint64_t resets() const { return resets_; }

private:
    struct Slot {
        explicit Slot(uint64_t len) : buf(len) {}
        BlkRequest r;
        Buffer buf;
        Bench* bench = nullptr;
        Slot* next_done = nullptr;
        uint64_t zone_gen = 0;  // append mode: the zone generation the request was sent to
        int attempts = 0;
    };

    static void Done(BlkRequest* r) {
        auto* s = static_cast<Slot*>(r->opaque);
        Bench* b = s->bench;
        util::MutexLock lk(b->mu_);
        s->next_done = b->done_;
        b->done_ = s;
        b->cv_.NotifyOne();
    }

    void SetError(const std::string& msg) {
        if (error_.ok()) error_ = Status::Error(EIO, msg);
        stop_ = true;
    }

    // Plain requests: the i-th request's offset (qemu-img bench wraps at the end of the image).
    uint64_t OffsetOf(uint64_t i) {
        uint64_t size = b_.size();
        uint64_t room = size > o_.size ? size - o_.size : 0;
        if (o_.random) {
            uint64_t slots = room / 512 + 1;
            return rng_() % slots * 512;
        }
        uint64_t step = o_.step ? o_.step : o_.size;
        uint64_t span = room + 1 > o_.offset ? room + 1 - o_.offset : 1;
        return o_.offset + (i * step) % span;
    }

    // Moves the stream to the next writable sequential zone, reset first when it holds data.
    bool NextZone() {
        uint32_t first = b_.nr_conv_zones(), n = b_.nr_zones();
        for (uint32_t tries = 0; tries < n - first; tries++) {
            zone_ = zone_ + 1 >= n || zone_ + 1 < first ? first : zone_ + 1;
            auto zi = b_.GetZone(zone_);
            if (!zi.ok() || zi->state == ZoneState::kReadOnly || zi->state == ZoneState::kOffline) continue;
            if (zi->state != ZoneState::kEmpty) {
                if (!b_.ZoneMgmt(ZoneMgmtOp::kReset, zi->start, false).ok()) continue;
                resets_++;
            }
            cursor_ = zi->start;
            end_ = zi->start + zi->cap;
            zone_gen_++;
            return true;
        }
        return false;
    }

    // Sends the slot's next request (or, with retry, its last one again). False: nothing left.
    bool Issue(Slot* s, bool retry) {
        if (stop_) return false;
        BlkRequest& r = s->r;
        if (!retry) {
            if (issued_ >= o_.count) return false;
            issued_++;
            s->attempts = 0;
        }
        r = BlkRequest{};
        r.buf = s->buf.p;
        r.len = o_.size;
        r.done = Done;
        r.opaque = s;
        if (o_.zoned == ZonedMode::kSeq && o_.write) {
            if (cursor_ + o_.size > end_) {
                // Leave the zone full (finish it when the request size does not divide the
                // capacity) and move on.
                if (cursor_ && cursor_ < end_) (void)b_.ZoneMgmt(ZoneMgmtOp::kFinish, zone_ * b_.zone_size(), false);
                if (!NextZone()) {
                    SetError("no writable sequential zone is free");
                    return false;
                }
                if (cursor_ + o_.size > end_) {
                    SetError("the request size exceeds the zone capacity");
                    return false;
                }
            }
            r.op = BlkOp::kWrite;
            r.off = cursor_;
            cursor_ += o_.size;
        } else if (o_.zoned == ZonedMode::kAppend && o_.write) {
            r.op = BlkOp::kAppend;
            r.off = uint64_t{zone_} * b_.zone_size();
            s->zone_gen = zone_gen_;
        } else {
            r.op = o_.write ? BlkOp::kWrite : BlkOp::kRead;
            r.off = OffsetOf(issued_ - 1);
        }
        b_.Submit(&r);
        return true;
    }

    // Accounts for a completed request. False: the slot stops (error). *retry: send it again.
    bool Check(Slot* s, bool* retry) {
        const BlkRequest& r = s->r;
        if (!r.result.ok()) {
            bool full = r.result.zone_error == ZoneError::kZoneIsFull ||
                        r.result.zone_error == ZoneError::kZoneBoundaryError;
            if (r.op == BlkOp::kAppend && full && ++s->attempts <= 2 * static_cast<int>(b_.nr_zones())) {
                // Every appender moves to the next zone, once per generation.
                if (s->zone_gen == zone_gen_) {
                    auto zi = b_.GetZone(zone_);
                    if (zi.ok() && zi->state != ZoneState::kFull && zi->state != ZoneState::kReadOnly &&
                        zi->state != ZoneState::kOffline)
                        (void)b_.ZoneMgmt(ZoneMgmtOp::kFinish, zi->start, false);
                    if (!NextZone()) {
                        SetError("no writable sequential zone is free");
                        return false;
                    }
                }
                *retry = true;
                return true;
            }
            const char* what = r.op == BlkOp::kAppend ? "zone append" : r.op == BlkOp::kWrite ? "write" : "read";
            SetError(std::string(what) + " at offset " + std::to_string(r.off) + " failed: " + r.result.message());
            return false;
        }
        if (o_.flush_interval && ++completed_ % o_.flush_interval == 0) {
            BlkResult f = b_.Flush();
            if (!f.ok()) {
                SetError("flush failed: " + f.message());
                return false;
            }
        }
        return true;
    }

    BlockBackend& b_;
    const BenchOptions& o_;
    // The submitting thread's alone (Run and what it calls).
    uint64_t issued_ = 0, completed_ = 0, resets_ = 0;
    bool stop_ = false;
    Status error_;
    std::mt19937_64 rng_{0x5eed};
    uint32_t zone_ = 0;                  // zoned modes: the zone being written
    uint64_t cursor_ = 0, end_ = 0;      // seq mode: next write offset, end of the zone's capacity
    uint64_t zone_gen_ = 0;              // bumped on each move to a new zone
    util::Mutex mu_;                     // with cv_: completions handed to the submitting thread
    util::CondVar cv_;
    Slot* done_ GUARDED_BY(mu_) = nullptr;
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
                          "persist-zones", "aio"});
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
        } else if (*n == "aio") {
            auto m = ParseAioMode(v);
            if (!m.ok()) return Fail(m.status());
            o.aio = *m;
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
                    "[--aio=io_uring|threads|sync|auto] "
                    "[-f FMT] FILE");
    if (o.size % 512) return Fail("the buffer size must be a multiple of 512 bytes");

    BlockBackendOptions bo;
    bo.filename = pos[0];
    bo.format = o.format;
    bo.read_only = !o.write;
    bo.direct = o.direct;
    bo.persist_zones = o.persist_zones;
    bo.aio = o.aio;
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
    printf("I/O engine: %s\n", AioModeName(b.aio_mode()));
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
