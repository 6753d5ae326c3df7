#include "block/file-fault.h"

#include "block/file-volatile.h"

#include <algorithm>
#include <cstring>
#include <random>

namespace qzns {

struct FaultFile::PendingOp {
    OpKind kind;  // kWrite, kTruncate or kPunchHole
    uint64_t off; // the new size for kTruncate
    uint64_t len;
    std::vector<uint8_t> data;  // kWrite only
};

struct FaultFile::Faults {
    // FailAfter
    bool after_armed = false;
    uint64_t after_left = 0;
    int after_err = EIO;
    OpKind after_kinds = OpKind::kNone;
    bool after_once = false;
    // FailRandomly
    uint32_t one_in = 0;
    std::mt19937_64 rng;
    int random_err = EIO;
    OpKind random_kinds = OpKind::kNone;
    // FailWritesInRange
    struct Range {
        uint64_t off, len;
        int err;
    };
    std::vector<Range> ranges;
    FaultHook hook;
    // SetCrashPoint
    bool crash_armed = false;
    uint64_t crash_left = 0;
};

namespace {

const char* KindName(OpKind k) {
    switch (k) {
    case OpKind::kRead: return "read";
    case OpKind::kWrite: return "write";
    case OpKind::kSync: return "sync";
    case OpKind::kTruncate: return "truncate";
    case OpKind::kPunchHole: return "punch hole";
    case OpKind::kQuery: return "size query";
    default: return "operation";
    }
}

bool Overlaps(uint64_t a_off, uint64_t a_len, uint64_t b_off, uint64_t b_len) {
    return a_len && b_len && a_off < b_off + b_len && b_off < a_off + a_len;
}

}  // namespace

Status FaultFile::Apply(File& f, const PendingOp& op) {
    switch (op.kind) {
    case OpKind::kWrite: return f.Pwrite(op.data.data(), op.len, op.off);
    case OpKind::kTruncate: return f.Truncate(op.off);
    case OpKind::kPunchHole: return f.PunchHole(op.off, op.len);
    default: return Status::Ok();
    }
}

FaultFile::FaultFile(std::unique_ptr<File> inner)
    : inner_(std::move(inner)), faults_(std::make_unique<Faults>()) {}

FaultFile::~FaultFile() = default;

// Decides whether an operation may run; counts it and every deliberate failure.
Status FaultFile::Admit(OpKind kind, uint64_t off, uint64_t len) {
    switch (kind) {
    case OpKind::kRead: stats_.reads++; break;
    case OpKind::kWrite: stats_.writes++; break;
    case OpKind::kSync: stats_.syncs++; break;
    case OpKind::kTruncate: stats_.truncates++; break;
    case OpKind::kPunchHole: stats_.punch_holes++; break;
    default: stats_.queries++; break;
    }
    auto fail = [&](int err, const std::string& why) REQUIRES(mu_) {
        stats_.failed++;
        return Status::Error(err, std::string(KindName(kind)) + " on " + inner_->name() + ": " + why);
    };
    if (powered_off_) return fail(EIO, "simulated power cut");
    Faults& f = *faults_;
    if (f.crash_armed && HasKind(OpKind::kMutating, kind)) {
        if (f.crash_left == 0) {
            powered_off_ = true;
            return fail(EIO, "simulated power cut");
        }
        f.crash_left--;
    }
    if (f.after_armed && HasKind(f.after_kinds, kind)) {
        if (f.after_left == 0) {
            if (f.after_once) f.after_armed = false;
            return fail(f.after_err, "injected error");
        }
        f.after_left--;
    }
    if (f.one_in && HasKind(f.random_kinds, kind) && f.rng() % f.one_in == 0)
        return fail(f.random_err, "injected random error");
    if (kind == OpKind::kWrite || kind == OpKind::kPunchHole) {
        for (const auto& r : f.ranges)
            if (Overlaps(off, len, r.off, r.len)) return fail(r.err, "injected error in range");
    }
    if (f.hook) {
        Status st = f.hook(kind, off, len);
        if (!st.ok()) {
            stats_.failed++;
            return st;
        }
    }
    return Status::Ok();
}

Result<uint64_t> FaultFile::LogicalSize() {
    if (!have_size_) {
        QZNS_ASSIGN(uint64_t s, inner_->Size());
        for (const PendingOp& op : log_) {
            if (op.kind == OpKind::kWrite && op.len) s = std::max(s, op.off + op.len);
            if (op.kind == OpKind::kTruncate) s = op.off;
        }
        size_ = s;
        have_size_ = true;
    }
    return size_;
}

Status FaultFile::Pread(void* buf, uint64_t len, uint64_t off) {
    util::MutexLock lock(mu_);
    QZNS_TRY(Admit(OpKind::kRead, off, len));
    QZNS_TRY(inner_->Pread(buf, len, off));
    // Replay the unsynced log over the durable bytes, oldest first, so later ops win.
    auto* out = static_cast<uint8_t*>(buf);
    for (const PendingOp& op : log_) {
        uint64_t lo = std::max(off, op.off);
        switch (op.kind) {
        case OpKind::kWrite:
        case OpKind::kPunchHole: {
            if (!Overlaps(off, len, op.off, op.len)) break;
            uint64_t hi = std::min(off + len, op.off + op.len);
            if (op.kind == OpKind::kWrite)
                std::memcpy(out + (lo - off), op.data.data() + (lo - op.off), hi - lo);
            else
                std::memset(out + (lo - off), 0, hi - lo);
            break;
        }
        case OpKind::kTruncate:
            // Bytes cut off read as zeros even if a later extension brings the offset back.
            if (off + len > op.off) std::memset(out + (lo - off), 0, off + len - lo);
            break;
        default: break;
        }
    }
    return Status::Ok();
}

Status FaultFile::Pwrite(const void* buf, uint64_t len, uint64_t off) {
    util::MutexLock lock(mu_);
    if (off + len < off) return Status::Error(EINVAL, "write range overflows");
    QZNS_TRY(Admit(OpKind::kWrite, off, len));
    QZNS_ASSIGN(uint64_t size, LogicalSize());
    const auto* p = static_cast<const uint8_t*>(buf);
    log_.push_back(PendingOp{OpKind::kWrite, off, len, std::vector<uint8_t>(p, p + len)});
    if (len) size_ = std::max(size, off + len);
    stats_.bytes_written += len;
    return Status::Ok();
}

Status FaultFile::Truncate(uint64_t size) {
    util::MutexLock lock(mu_);
    QZNS_TRY(Admit(OpKind::kTruncate, size, 0));
    log_.push_back(PendingOp{OpKind::kTruncate, size, 0, {}});
    size_ = size;
    have_size_ = true;
    return Status::Ok();
}

Status FaultFile::PunchHole(uint64_t off, uint64_t len) {
    util::MutexLock lock(mu_);
    if (off + len < off) return Status::Error(EINVAL, "punch-hole range overflows");
    QZNS_TRY(Admit(OpKind::kPunchHole, off, len));
    log_.push_back(PendingOp{OpKind::kPunchHole, off, len, {}});
    return Status::Ok();
}

Status FaultFile::Sync() {
    util::MutexLock lock(mu_);
    QZNS_TRY(Admit(OpKind::kSync, 0, 0));
    // Pop each op as it lands so a failure part-way leaves the log holding exactly what the
    // inner file has not seen.
    size_t done = 0;
    Status st;
    for (; done < log_.size(); done++) {
        st = Apply(*inner_, log_[done]);
        if (!st.ok()) break;
    }
    log_.erase(log_.begin(), log_.begin() + static_cast<std::ptrdiff_t>(done));
    QZNS_TRY(st);
    return inner_->Sync();
}

Result<uint64_t> FaultFile::Size() {
    util::MutexLock lock(mu_);
    QZNS_TRY(Admit(OpKind::kQuery, 0, 0));
    return LogicalSize();
}

Result<uint64_t> FaultFile::AllocatedBytes() {
    util::MutexLock lock(mu_);
    QZNS_TRY(Admit(OpKind::kQuery, 0, 0));
    if (log_.empty()) return inner_->AllocatedBytes();
    return LogicalSize();
}

const std::string& FaultFile::name() const { return inner_->name(); }

Status FaultFile::SimulateCrash(CrashMode mode, uint64_t seed) {
    util::MutexLock lock(mu_);
    std::mt19937_64 rng(seed);  // fully specified by the standard, so seeds replay anywhere
    std::vector<PendingOp> log = std::move(log_);
    log_.clear();
    have_size_ = false;
    powered_off_ = true;
    stats_.crashes++;
    if (mode == CrashMode::kDropUnsynced) return Status::Ok();
    for (const PendingOp& op : log) {
        if (mode == CrashMode::kTearSectors && op.kind == OpKind::kWrite) {
            QZNS_TRY(WriteTornSectors(*inner_, op.data.data(), op.len, op.off, rng).status());
            continue;
        }
        if (rng() & 1) QZNS_TRY(Apply(*inner_, op));
    }
    return inner_->Sync();
}

void FaultFile::PowerOn() {
    util::MutexLock lock(mu_);
    powered_off_ = false;
    *faults_ = Faults();
}

Result<std::unique_ptr<File>> FaultFile::CloneDurable() {
    util::MutexLock lock(mu_);
    std::unique_ptr<File> copy = NewMemFile(inner_->name() + " (durable copy)");
    QZNS_ASSIGN(uint64_t size, inner_->Size());
    std::vector<uint8_t> buf(1 << 20);
    for (uint64_t off = 0; off < size; off += buf.size()) {
        uint64_t n = std::min<uint64_t>(buf.size(), size - off);
        QZNS_TRY(inner_->Pread(buf.data(), n, off));
        QZNS_TRY(copy->Pwrite(buf.data(), n, off));
    }
    QZNS_TRY(copy->Truncate(size));
    return copy;
}

void FaultFile::SetCrashPoint(uint64_t n) {
    util::MutexLock lock(mu_);
    faults_->crash_armed = true;
    faults_->crash_left = n;
}

bool FaultFile::powered_off() const {
    util::MutexLock lock(mu_);
    return powered_off_;
}

void FaultFile::FailAfter(uint64_t n, int err, OpKind kinds, bool once) {
    util::MutexLock lock(mu_);
    faults_->after_armed = true;
    faults_->after_left = n;
    faults_->after_err = err;
    faults_->after_kinds = kinds;
    faults_->after_once = once;
}

void FaultFile::FailRandomly(uint32_t one_in, uint64_t seed, int err, OpKind kinds) {
    util::MutexLock lock(mu_);
    faults_->one_in = one_in;
    faults_->rng.seed(seed);
    faults_->random_err = err;
    faults_->random_kinds = kinds;
}

void FaultFile::FailWritesInRange(uint64_t off, uint64_t len, int err) {
    util::MutexLock lock(mu_);
    faults_->ranges.push_back({off, len, err});
}

void FaultFile::SetHook(FaultHook hook) {
    util::MutexLock lock(mu_);
    faults_->hook = std::move(hook);
}

void FaultFile::ClearFaults() {
    util::MutexLock lock(mu_);
    Faults& f = *faults_;
    f.after_armed = false;
    f.one_in = 0;
    f.ranges.clear();
    f.hook = nullptr;
}

FaultFileStats FaultFile::stats() const {
    util::MutexLock lock(mu_);
    FaultFileStats s = stats_;
    s.unsynced_ops = log_.size();
    return s;
}

std::unique_ptr<FaultFile> NewFaultFile(std::unique_ptr<File> inner) {
    return std::make_unique<FaultFile>(std::move(inner));
}

namespace {

class BorrowedFile final : public File {
public:
    explicit BorrowedFile(File* target) : t_(target) {}
    Status Pread(void* buf, uint64_t len, uint64_t off) override { return t_->Pread(buf, len, off); }
    Status Pwrite(const void* buf, uint64_t len, uint64_t off) override {
        return t_->Pwrite(buf, len, off);
    }
    Status Sync() override { return t_->Sync(); }
    Result<uint64_t> Size() override { return t_->Size(); }
    Status Truncate(uint64_t size) override { return t_->Truncate(size); }
    Status PunchHole(uint64_t off, uint64_t len) override { return t_->PunchHole(off, len); }
    Result<uint64_t> AllocatedBytes() override { return t_->AllocatedBytes(); }
    const std::string& name() const override { return t_->name(); }

private:
    File* t_;
};

}  // namespace

std::unique_ptr<File> BorrowFile(File* target) { return std::make_unique<BorrowedFile>(target); }

}  // namespace qzns
