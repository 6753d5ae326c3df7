#include "block/file-volatile.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <random>

namespace qzns {

struct VolatileCacheFile::Op {
    enum class Kind : uint8_t { kWrite, kPunch, kTruncate };
    Kind kind;
    uint64_t off;  // kTruncate: the new size
    uint64_t len;  // kTruncate: 0
    std::vector<uint8_t> data;  // kWrite
    // The bytes whose content the operation decides: a truncate zeroes everything past the size.
    uint64_t end() const { return kind == Kind::kTruncate ? std::numeric_limits<uint64_t>::max() : off + len; }
};

Result<uint64_t> WriteTornSectors(File& to, const uint8_t* data, uint64_t len, uint64_t off, std::mt19937_64& rng) {
    uint64_t kept = 0;
    for (uint64_t pos = off, end = off + len; pos < end;) {
        uint64_t piece_end = std::min(end, (pos / kSector + 1) * kSector);
        if (rng() & 1) {
            QZNS_TRY(to.Pwrite(data + (pos - off), piece_end - pos, pos));
            kept += piece_end - pos;
        }
        pos = piece_end;
    }
    return kept;
}

const char* PowerCutModeName(PowerCutMode m) {
    return m == PowerCutMode::kRandom ? "random" : "lose-unflushed";
}

Result<PowerCutMode> ParsePowerCutMode(const std::string& s) {
    if (s == "lose-unflushed") return PowerCutMode::kLoseUnflushed;
    if (s == "random") return PowerCutMode::kRandom;
    return Status::Error(EINVAL, "power-cut mode must be 'lose-unflushed' or 'random', not '" + s + "'");
}

VolatileCacheFile::VolatileCacheFile(std::unique_ptr<File> inner, uint64_t capacity)
    : inner_(std::move(inner)), capacity_(capacity) {
    // A size query that fails leaves 0; the first write past it corrects the figure.
    auto s = inner_->Size();
    util::MutexLock lk(mu_);
    size_ = s.ok() ? *s : 0;
    stats_.capacity = capacity_;
}

VolatileCacheFile::~VolatileCacheFile() = default;

Status VolatileCacheFile::Off(const char* what) const {
    return Status::Error(EIO, std::string(what) + " on " + inner_->name() + ": the drive lost power (power-cut)");
}

Status VolatileCacheFile::Apply(File& f, const Op& op) {
    switch (op.kind) {
    case Op::Kind::kWrite: return f.Pwrite(op.data.data(), op.len, op.off);
    case Op::Kind::kPunch: return f.PunchHole(op.off, op.len);
    case Op::Kind::kTruncate: return f.Truncate(op.off);
    }
    return Status::Ok();
}

void VolatileCacheFile::Cache(std::shared_ptr<const Op> op, uint64_t lo, uint64_t hi) {
    // Cut a piece that straddles lo, keeping what lies outside [lo, hi).
    auto it = pieces_.lower_bound(lo);
    if (it != pieces_.begin()) {
        auto p = std::prev(it);
        if (p->second.end > lo) {
            Piece old = p->second;
            p->second.end = lo;
            if (old.end > hi) pieces_.emplace(hi, Piece{old.end, std::move(old.op)});
        }
    }
    it = pieces_.lower_bound(lo);
    while (it != pieces_.end() && it->first < hi) {
        if (it->second.end > hi) {
            Piece rest = std::move(it->second);
            pieces_.erase(it);
            pieces_.emplace(hi, std::move(rest));
            break;
        }
        it = pieces_.erase(it);
    }
    pieces_.emplace(lo, Piece{hi, std::move(op)});
}

Status VolatileCacheFile::WriteBack(size_t n) {
    writing_back_ = true;
    std::vector<std::shared_ptr<const Op>> batch(log_.begin(), log_.begin() + static_cast<ptrdiff_t>(n));
    // The operations stay cached (and readable) until the image file has them.
    mu_.Unlock();
    Status st;
    size_t done = 0;
    for (; done < batch.size(); done++) {
        st = Apply(*inner_, *batch[done]);
        if (!st.ok()) break;
    }
    mu_.Lock();
    for (size_t i = 0; i < done; i++) {
        const Op* op = batch[i].get();
        log_.pop_front();  // only a write-back removes operations, oldest first: this is batch[i]
        auto it = pieces_.upper_bound(op->off);
        if (it != pieces_.begin()) --it;
        while (it != pieces_.end() && it->first < op->end()) {
            if (it->second.op.get() == op)
                it = pieces_.erase(it);
            else
                ++it;
        }
        if (op->kind == Op::Kind::kWrite) stats_.cached_bytes -= op->len;
        stats_.cached_ops--;
    }
    writing_back_ = false;
    turn_cv_.NotifyAll();
    return st;
}

Status VolatileCacheFile::Pread(void* buf, uint64_t len, uint64_t off) {
    if (powered_off()) return Off("read");
    if (capacity_ == 0) return inner_->Pread(buf, len, off);
    // Copy the overlapping pieces (they own their data), then read the image file without the
    // lock: a write-back that lands meanwhile writes exactly what the pieces hold.
    std::vector<std::pair<uint64_t, Piece>> hits;
    uint64_t covered = 0;
    {
        util::MutexLock lk(mu_);
        if (powered_off()) return Off("read");
        auto it = pieces_.upper_bound(off);
        if (it != pieces_.begin()) --it;
        for (; it != pieces_.end() && it->first < off + len; ++it) {
            if (it->second.end <= off) continue;
            hits.emplace_back(it->first, it->second);
            covered += std::min(it->second.end, off + len) - std::max(it->first, off);
        }
    }
    auto* out = static_cast<uint8_t*>(buf);
    if (covered < len) QZNS_TRY(inner_->Pread(buf, len, off));
    for (const auto& [start, p] : hits) {
        uint64_t lo = std::max(start, off), hi = std::min(p.end, off + len);
        if (p.op->kind == Op::Kind::kWrite)
            std::memcpy(out + (lo - off), p.op->data.data() + (lo - p.op->off), hi - lo);
        else
            std::memset(out + (lo - off), 0, hi - lo);
    }
    return Status::Ok();
}

Status VolatileCacheFile::Pwrite(const void* buf, uint64_t len, uint64_t off) {
    if (powered_off()) return Off("write");
    if (capacity_ == 0) return inner_->Pwrite(buf, len, off);
    if (off + len < off) return Status::Error(EINVAL, "write range overflows");
    const auto* p = static_cast<const uint8_t*>(buf);
    auto op = std::make_shared<Op>(Op{Op::Kind::kWrite, off, len, std::vector<uint8_t>(p, p + len)});
    util::MutexLock lk(mu_);
    if (powered_off()) return Off("write");
    if (len) Cache(op, off, off + len);
    log_.push_back(std::move(op));
    stats_.cached_bytes += len;
    stats_.cached_ops++;
    if (len) size_ = std::max(size_, off + len);
    if (stats_.cached_bytes <= capacity_) return Status::Ok();
    // Full: write back the oldest operations until half the cache is free. A writer that finds
    // another write-back running goes on unless the cache has grown to twice its size.
    if (writing_back_) {
        while (writing_back_ && stats_.cached_bytes > 2 * capacity_ && !powered_off()) turn_cv_.Wait(mu_);
        return powered_off() ? Off("write") : Status::Ok();
    }
    size_t n = 0;
    uint64_t left = stats_.cached_bytes;
    while (n < log_.size() && left > capacity_ / 2) {
        if (log_[n]->kind == Op::Kind::kWrite) left -= log_[n]->len;
        n++;
    }
    stats_.evicted_ops += n;
    // The write itself is cached already; a failed eviction keeps the operations for the next
    // Sync, which reports the error to the host.
    (void)WriteBack(n);
    return Status::Ok();
}

Status VolatileCacheFile::PunchHole(uint64_t off, uint64_t len) {
    if (powered_off()) return Off("punch hole");
    if (capacity_ == 0) return inner_->PunchHole(off, len);
    if (off + len < off) return Status::Error(EINVAL, "punch-hole range overflows");
    auto op = std::make_shared<Op>(Op{Op::Kind::kPunch, off, len, {}});
    util::MutexLock lk(mu_);
    if (powered_off()) return Off("punch hole");
    if (len) Cache(op, off, off + len);
    log_.push_back(std::move(op));
    stats_.cached_ops++;
    return Status::Ok();
}

Status VolatileCacheFile::Truncate(uint64_t size) {
    if (powered_off()) return Off("truncate");
    if (capacity_ == 0) return inner_->Truncate(size);
    auto op = std::make_shared<Op>(Op{Op::Kind::kTruncate, size, 0, {}});
    util::MutexLock lk(mu_);
    if (powered_off()) return Off("truncate");
    Cache(op, size, op->end());
    log_.push_back(std::move(op));
    stats_.cached_ops++;
    size_ = size;
    return Status::Ok();
}

Status VolatileCacheFile::Sync() {
    if (powered_off()) return Off("sync");
    if (capacity_ == 0) return inner_->Sync();
    {
        util::MutexLock lk(mu_);
        while (writing_back_ && !powered_off()) turn_cv_.Wait(mu_);
        if (powered_off()) return Off("sync");
        stats_.syncs++;
        QZNS_TRY(WriteBack(log_.size()));
    }
    return inner_->Sync();
}

Result<uint64_t> VolatileCacheFile::Size() {
    if (powered_off()) return Off("size query");
    if (capacity_ == 0) return inner_->Size();
    util::MutexLock lk(mu_);
    return size_;
}

Result<uint64_t> VolatileCacheFile::AllocatedBytes() {
    if (powered_off()) return Off("size query");
    // The image file's figure: cached writes take host space only once written back.
    return inner_->AllocatedBytes();
}

Result<bool> VolatileCacheFile::MayHoldData(uint64_t off, uint64_t len) {
    if (powered_off()) return Off("size query");
    if (capacity_ != 0) {
        util::MutexLock lk(mu_);
        auto it = pieces_.upper_bound(off);
        if (it != pieces_.begin()) --it;
        for (; it != pieces_.end() && it->first < off + len; ++it)
            if (it->second.end > off && it->second.op->kind == Op::Kind::kWrite) return true;
    }
    return inner_->MayHoldData(off, len);
}

void VolatileCacheFile::Submit(FileIo* io) {
    if (capacity_ == 0 && !powered_off()) return inner_->Submit(io);
    File::Submit(io);  // the blocking methods, in this thread: the cache is memory
}

AioMode VolatileCacheFile::aio_mode() const { return capacity_ == 0 ? inner_->aio_mode() : AioMode::kSync; }

VolatileCacheStats VolatileCacheFile::stats() const {
    util::MutexLock lk(mu_);
    return stats_;
}

Result<PowerCutReport> VolatileCacheFile::PowerCut(PowerCutMode mode, uint64_t seed) {
    std::deque<std::shared_ptr<const Op>> log;
    {
        util::MutexLock lk(mu_);
        while (writing_back_) turn_cv_.Wait(mu_);
        writing_back_ = true;  // for good: nothing is written back after the cut
        off_.store(true, std::memory_order_release);
        turn_cv_.NotifyAll();
        log.swap(log_);
        pieces_.clear();
        stats_.cached_bytes = 0;
        stats_.cached_ops = 0;
    }
    PowerCutReport rep;
    std::mt19937_64 rng(seed);
    for (const auto& op : log) {
        if (op->kind != Op::Kind::kWrite) {
            bool keep = mode == PowerCutMode::kRandom && (rng() & 1);
            (keep ? rep.ops_kept : rep.ops_lost)++;
            if (keep) QZNS_TRY(Apply(*inner_, *op));
            continue;
        }
        uint64_t kept = 0;
        if (mode == PowerCutMode::kRandom) {
            QZNS_ASSIGN(kept, WriteTornSectors(*inner_, op->data.data(), op->len, op->off, rng));
        }
        rep.bytes_kept += kept;
        rep.bytes_lost += op->len - kept;
        (kept ? rep.ops_kept : rep.ops_lost)++;
    }
    if (rep.ops_kept) QZNS_TRY(inner_->Sync());
    return rep;
}

}  // namespace qzns
