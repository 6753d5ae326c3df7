// Opening a block backend: a plain disk passes requests through; a zoned qcow2 image gets the
// zoned layer (block/zoned/zoned-backend.cc).
#include "block/block-backend.h"

#include <cstddef>

#include "util/mutex.h"

#include "block/qcow2/qcow2.h"
#include "block/zone-prefix.h"
#include "block/zoned/zoned-backend.h"

namespace qzns {
namespace {

BlkResult FromStatus(Status st) { return st.ok() ? BlkResult::Ok() : BlkResult::Io(std::move(st)); }

// A disk without zones: every request goes to the driver unchanged.
class PlainBackend final : public BlockBackend {
public:
    explicit PlainBackend(std::unique_ptr<BlockDriver> drv) : drv_(std::move(drv)) {}

    uint64_t size() const override { return drv_->size(); }
    bool read_only() const override { return drv_->read_only(); }
    bool is_zoned() const override { return false; }
    ZonedProfile profile() const override { return ZonedProfile::kZns; }
    uint32_t nr_zones() const override { return 0; }
    uint64_t zone_size() const override { return 0; }
    uint64_t zone_capacity() const override { return 0; }
    uint32_t nr_conv_zones() const override { return 0; }
    uint32_t max_open_zones() const override { return 0; }
    uint32_t max_active_zones() const override { return 0; }
    uint32_t max_append_bytes() const override { return 0; }
    uint32_t zd_extension_size() const override { return 0; }

    BlkResult Read(uint64_t off, void* buf, uint64_t len) override { return FromStatus(drv_->Read(off, buf, len)); }
    BlkResult Write(uint64_t off, const void* buf, uint64_t len, bool fua) override {
        Status st = drv_->Write(off, buf, len);
        if (st.ok() && fua) st = drv_->Flush();
        return FromStatus(std::move(st));
    }
    BlkResult WriteZeroes(uint64_t off, uint64_t len, bool fua) override {
        Status st = drv_->WriteZeroes(off, len, false);
        if (st.ok() && fua) st = drv_->Flush();
        return FromStatus(std::move(st));
    }
    BlkResult Discard(uint64_t off, uint64_t len) override { return FromStatus(drv_->Discard(off, len)); }
    BlkResult Flush() override { return FromStatus(drv_->Flush()); }
    BlkResult Append(uint64_t, const void*, uint64_t, bool) override {
        return BlkResult::Zone(ZoneError::kInvalidOpcode, "zone append on a disk without zones");
    }
    BlkResult ZoneMgmt(ZoneMgmtOp, uint64_t, bool) override {
        return BlkResult::Zone(ZoneError::kInvalidOpcode, "zone management on a disk without zones");
    }
    BlkResult SetZoneDescExt(uint64_t, const void*) override {
        return BlkResult::Zone(ZoneError::kInvalidOpcode, "zone management on a disk without zones");
    }
    Result<ZoneInfo> GetZone(uint32_t) override { return Status::Error(ENOTSUP, "the disk has no zones"); }
    Result<std::vector<ZoneInfo>> ReportZones(uint64_t, uint32_t) override {
        return Status::Error(ENOTSUP, "the disk has no zones");
    }
    Status ReadZoneDescExt(uint32_t, void*) override { return Status::Error(ENOTSUP, "the disk has no zones"); }
    BlkResult InjectZoneFault(uint32_t, ZoneState) override {
        return BlkResult::Io(Status::Error(ENOTSUP, "the disk has no zones"));
    }
    void SetZoneChangedCallback(std::function<void(uint32_t)>) override {}
    AioMode aio_mode() const override { return drv_->aio_mode(); }
    Status Close() override { return drv_->Close(); }

    // Reads and rewrites of mapped data go straight to the file engine; the rest blocks on the pool.
    void Submit(BlkRequest* r) override {
        if ((r->op == BlkOp::kRead || (r->op == BlkOp::kWrite && !r->fua)) && r->len) {
            r->backend = this;
            r->PrepareIo(r->op == BlkOp::kRead ? FileIo::Op::kRead : FileIo::Op::kWrite, r->buf, r->len, 0,
                         [](FileIo* io, Status st) {
                BlkRequest* q = BlkRequest::FromIo(io);
                q->result = st.ok() ? BlkResult::Ok() : BlkResult::Io(std::move(st));
                q->done(q);
            });
            if (drv_->TrySubmitMapped(&r->io, r->off)) return;
        }
        SubmitBlocking(this, r);
    }

private:
    std::unique_ptr<BlockDriver> drv_;
};

// Blocking requests of every backend run here. Never destroyed: a request may still be running
// while the process exits.
TaskPool& BlockingPool() {
    static TaskPool* pool = new TaskPool(32);
    return *pool;
}

}  // namespace

void BlockBackend::Submit(BlkRequest* r) { SubmitBlocking(this, r); }

void BlockBackend::SubmitBlocking(BlockBackend* be, BlkRequest* r) {
    r->backend = be;
    r->task.run = [](PoolTask* t) {
        BlkRequest* r = BlkRequest::FromTask(t);
        BlockBackend* b = r->backend;
        switch (r->op) {
        case BlkOp::kRead: r->result = b->Read(r->off, r->buf, r->len); break;
        case BlkOp::kWrite: r->result = b->Write(r->off, r->buf, r->len, r->fua); break;
        case BlkOp::kWriteZeroes: r->result = b->WriteZeroes(r->off, r->len, r->fua); break;
        case BlkOp::kAppend: r->result = b->Append(r->off, r->buf, r->len, r->fua); break;
        case BlkOp::kFlush: r->result = b->Flush(); break;
        case BlkOp::kDiscard: r->result = b->Discard(r->off, r->len); break;
        }
        r->done(r);
    };
    BlockingPool().Post(&r->task);
}

TaskPool& BlockBackend::blocking_pool() { return BlockingPool(); }

void BlkWaiter::Arm(BlkRequest& r) {
    {
        util::MutexLock lk(mu_);
        done_ = false;
    }
    r.opaque = this;
    r.done = [](BlkRequest* q) {
        auto* w = static_cast<BlkWaiter*>(q->opaque);
        util::MutexLock lk(w->mu_);
        w->done_ = true;
        w->cv_.NotifyAll();  // under the lock: the waiter may be gone once it is released
    };
}

BlkResult BlkWaiter::Wait(BlkRequest& r) {
    util::MutexLock lk(mu_);
    while (!done_) cv_.Wait(mu_);
    return r.result;
}

BlkResult SubmitAndWait(BlockBackend& be, BlkRequest& r) {
    BlkWaiter w;
    w.Arm(r);
    be.Submit(&r);
    return w.Wait(r);
}

Result<std::unique_ptr<BlockBackend>> BlockBackend::OpenDriver(std::unique_ptr<BlockDriver> drv,
                                                               bool persist_zones) {
    if (drv->zoned_store()) return OpenZonedBackend(std::move(drv), persist_zones);
    return std::unique_ptr<BlockBackend>(std::make_unique<PlainBackend>(std::move(drv)));
}

Result<std::unique_ptr<BlockBackend>> BlockBackend::Open(const BlockBackendOptions& opts) {
    OpenOptions o;
    o.write = !opts.read_only;
    o.lock = opts.lock;
    o.direct = opts.direct;
    o.format = opts.format;
    o.aio = opts.aio;
    VolatileCacheFile* power = nullptr;
    if (!opts.read_only) {
        o.wrap_file = [&](std::unique_ptr<File> f) -> std::unique_ptr<File> {
            auto v = std::make_unique<VolatileCacheFile>(std::move(f), opts.volatile_cache);
            power = v.get();
            return v;
        };
    }
    QZNS_ASSIGN(auto drv, OpenImage(opts.filename, o));
    QZNS_ASSIGN(auto be, OpenDriver(std::move(drv), opts.persist_zones));
    be->power_ = power;
    be->open_opts_ = opts;
    return be;
}

Result<PowerCutReport> BlockBackend::PowerCut(PowerCutMode mode, uint64_t seed, uint64_t atomic_unit) {
    if (!power_) return Status::Error(ENOTSUP, "power-cut needs a writable node the daemon opened");
    if (Status s = CheckAtomicUnit(atomic_unit); !s.ok()) return s;
    if (power_->powered_off()) return Status::Error(EIO, "the drive is already powered off");
    // Without a volatile cache a completed write is on the medium, zone word included.
    if (power_->capacity() == 0) {
        BlkResult f = Flush();
        if (!f.ok()) return f.status.Prefix("power-cut: making completed writes durable");
    }
    // Zone prefixes are drawn and read while the cache still holds the data.
    std::vector<ZonePrefix> prefixes;
    if (mode == PowerCutMode::kRandom && power_->capacity() != 0) {
        QZNS_ASSIGN(auto zones, UnflushedZones());
        QZNS_ASSIGN(prefixes, DrawZonePrefixes(*this, zones, seed, atomic_unit));
    }
    QZNS_ASSIGN(PowerCutReport rep, power_->PowerCut(mode, seed));
    QZNS_TRY(ReplayZonePrefixes(open_opts_, prefixes, rep));
    return rep;
}

}  // namespace qzns
