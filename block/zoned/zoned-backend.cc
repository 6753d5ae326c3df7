// The zoned layer over a zoned qcow2 image. Zone words live in memory (8 bytes per zone and a
// dirty bit) and reach the image at flush, after the data they describe:
//   data durable (driver flush)  ->  zone words written  ->  sync
// so a persisted write pointer never runs ahead of durable data. Zone management actions run the
// same flush before they complete, which makes them durable on completion.
//
// Concurrency: zones are spread over kShards shards (zone z in shard z % kShards, so the
// neighbouring zones that several writers fill at once have different locks). A shard's mutex
// guards its zones' words, extents, busy and dirty marks and writes in flight. The device-wide
// resource counters (open and active zones, the implicitly opened set) have their own lock,
// tmu_, taken only by decisions that read or change them: a zone entering or leaving the
// opened/closed states, zone management, fault injection. A write to an opened zone that does not
// fill it (almost every write) takes only its shard's lock. Lock order: tmu_, then shard locks;
// no thread holds two shard locks at once. No lock is held across I/O.
// Writes and appends get their LBA under the shard lock (so appends to one zone are assigned
// atomically and in order) and then run in parallel. A zone's persisted wp is the lowest start
// of its writes still in flight, never beyond.
//
// Data of a sequential zone lives in one linear host extent where the format offers it
// (ZonedStore::MapZone, allocated at the zone's first write): reads and writes then go straight
// to extent + offset, and a reset zeroes the extent in one call. Zones an older image stored
// cluster by cluster keep going through the driver until a reset empties them.
#include "block/zoned/zoned-backend.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <set>
#include <unordered_map>

#include "block/zoned/zoned-store.h"

namespace qzns {
namespace {

constexpr uint32_t kShards = 64;

// The counters only decide whether a zone may join the open or active set. A write decided
// with them saturated that succeeds and changes none of them was not theirs to decide.
constexpr ZoneResources kSaturated{1u << 29, 1u << 29, 1u << 29};

std::string ZoneMsg(uint32_t z, ZoneError e) {
    return std::string(ZoneErrorName(e)) + " (zone " + std::to_string(z) + ")";
}

class ZonedBackend final : public BlockBackend {
public:
    ZonedBackend(std::unique_ptr<BlockDriver> drv, ZonedStore* store, bool persist)
        : drv_(std::move(drv)), store_(store), persist_(persist) {
        const ZonedGeometry& g = store_->zoned_geometry();
        geo_ = g;
        zs_ = g.zone_size / kSector;
        cap_ = g.zone_capacity / kSector;
        limits_.profile = g.profile;
        limits_.max_open = g.max_open_zones;
        limits_.max_active = g.max_active_zones;
        limits_.max_append = g.max_append_bytes / kSector;
        limits_.zde_supported = g.zd_extension_size > 0;
        flush_task_.be = this;
        flush_task_.run = [](PoolTask* t) { static_cast<FlushTask*>(t)->be->RunFlushes(nullptr); };
    }

    Status Init();

    uint64_t size() const override { return drv_->size(); }
    bool read_only() const override { return drv_->read_only(); }
    bool is_zoned() const override { return true; }
    ZonedProfile profile() const override { return limits_.profile; }
    uint32_t nr_zones() const override { return geo_.nr_zones; }
    uint64_t zone_size() const override { return geo_.zone_size; }
    uint64_t zone_capacity() const override { return geo_.zone_capacity; }
    uint32_t nr_conv_zones() const override { return geo_.nr_conv_zones; }
    uint32_t max_open_zones() const override { return geo_.max_open_zones; }
    uint32_t max_active_zones() const override { return geo_.max_active_zones; }
    uint32_t max_append_bytes() const override { return geo_.max_append_bytes; }
    uint32_t zd_extension_size() const override { return geo_.zd_extension_size; }

    BlkResult Read(uint64_t off, void* buf, uint64_t len) override;
    BlkResult Write(uint64_t off, const void* buf, uint64_t len, bool fua) override {
        return WriteCommon(off, buf, len, fua);
    }
    BlkResult WriteZeroes(uint64_t off, uint64_t len, bool fua) override {
        return WriteCommon(off, nullptr, len, fua);
    }
    BlkResult Discard(uint64_t off, uint64_t len) override;
    BlkResult Flush() override;
    BlkResult Append(uint64_t zone_start, const void* buf, uint64_t len, bool fua) override;
    BlkResult ZoneMgmt(ZoneMgmtOp op, uint64_t zone_start, bool all) override;
    BlkResult SetZoneDescExt(uint64_t zone_start, const void* data) override;
    Result<ZoneInfo> GetZone(uint32_t zone) override;
    Result<std::vector<ZoneInfo>> ReportZones(uint64_t off, uint32_t max) override;
    Status ReadZoneDescExt(uint32_t zone, void* buf) override { return store_->ReadZded(zone, buf); }
    BlkResult InjectZoneFault(uint32_t zone, ZoneState state) override;
    void SetZoneChangedCallback(std::function<void(uint32_t)> cb) override {
        util::MutexLock lk(tmu_);
        changed_cb_ = std::move(cb);
    }
    void Submit(BlkRequest* r) override;
    AioMode aio_mode() const override { return drv_->aio_mode(); }
    Status Close() override;

protected:
    Result<std::vector<UnflushedZone>> UnflushedZones() override;

private:
    // Extent of zone z: a host offset (linear), kGeneric (through the driver) or kUnmapped.
    // Resolved through the format outside any lock and cached once known.
    static constexpr uint64_t kGeneric = 0;
    static constexpr uint64_t kUnmapped = ~uint64_t{0};

    struct alignas(64) Shard {
        util::Mutex mu;
        util::CondVar idle_cv;  // a busy zone of this shard was released
        // Indexed by Slot(z).
        std::vector<uint64_t> words GUARDED_BY(mu);  // current state
        // kUnmapped until resolved (an unmapped zone is asked again), kGeneric, or the host
        // offset of the zone's linear extent (never changes once set).
        std::vector<uint64_t> extent GUARDED_BY(mu);
        std::vector<bool> dirty GUARDED_BY(mu);
        std::vector<bool> busy GUARDED_BY(mu);
        std::vector<uint32_t> dirty_list GUARDED_BY(mu);
        ZoneWriteLink* inflight GUARDED_BY(mu) = nullptr;  // writes in flight, any zone of the shard
        // Asynchronous writes and appends that arrived while their zone was busy, in order.
        std::unordered_map<uint32_t, std::vector<BlkRequest*>> parked GUARDED_BY(mu);
    };
    Shard& ShardOf(uint32_t z) { return shards_[z % kShards]; }
    static size_t Slot(uint32_t z) { return z / kShards; }
    static uint64_t& WordOf(Shard& s, uint32_t z) REQUIRES(s.mu) { return s.words[Slot(z)]; }

    ZoneGeometry Geo(uint32_t z) const {
        ZoneGeometry g;
        g.zslba = uint64_t{z} * zs_;
        g.zsze = zs_;
        g.zcap = z < geo_.nr_conv_zones ? zs_ : cap_;
        g.type = z < geo_.nr_conv_zones ? ZoneType::kConventional : ZoneType::kSeqWriteRequired;
        return g;
    }
    uint32_t ZoneOfSector(uint64_t s) const { return static_cast<uint32_t>(s / zs_); }
    bool IsConv(uint32_t z) const { return z < geo_.nr_conv_zones; }

    // A plan's effect on the zone's own record, and on the device-wide counters.
    void ApplyWord(Shard& s, uint32_t z, const ZonePlan& plan) REQUIRES(s.mu);
    void ApplyResources(uint32_t z, const ZonePlan& plan) REQUIRES(tmu_);
    void Apply(Shard& s, uint32_t z, const ZonePlan& plan) REQUIRES(tmu_, s.mu) {
        ApplyResources(z, plan);
        ApplyWord(s, z, plan);
    }
    // Closes the least recently written Implicitly Opened zone other than `except` (whose shard,
    // `held`, the caller holds; it is released meanwhile when the victim is in another shard).
    ZoneError EvictImplicitOpen(Shard& held, uint32_t except) REQUIRES(tmu_, held.mu);
    // Decides an action with the real counters, closing an implicitly opened zone first when
    // the plan needs the room.
    ZoneDecision DecideWithEviction(Shard& s, uint32_t z, ZoneAction a) REQUIRES(tmu_, s.mu);
    ZoneError CloseImplicit(Shard& s, uint32_t z) REQUIRES(tmu_, s.mu);
    ZoneWord PersistableWord(Shard& s, uint32_t z) REQUIRES(s.mu);
    ZoneInfo InfoOf(Shard& s, uint32_t z) REQUIRES(s.mu);

    Result<uint64_t> ZoneExtentOf(uint32_t z, bool allocate);
    static bool IsLinear(uint64_t ext) { return ext != kGeneric && ext != kUnmapped; }
    // ext: the zone's extent as read when the request was decided (kUnmapped: look it up).
    Status ReadData(uint32_t z, uint64_t off, void* buf, uint64_t len, uint64_t ext);
    Status WriteData(uint32_t z, uint64_t off, const void* buf, uint64_t len, uint64_t ext);
    // Zone management that frees a zone's data marks it busy until the data is gone, so a write
    // the new wp allows cannot land before the hole punch that would erase it.
    void WaitZoneIdle(Shard& s, uint32_t z) REQUIRES(s.mu);
    void ReleaseBusy(const std::vector<uint32_t>& zones) EXCLUDES(tmu_);
    // The zones one management command holds busy; released when it ends, however it ends.
    // A command waits for busy zones only before it marks any, so two never wait on each other.
    class BusyZones {
    public:
        explicit BusyZones(ZonedBackend* be) : be_(be) {}
        ~BusyZones() { Release(); }

        void Release() EXCLUDES(be_->tmu_) {
            be_->ReleaseBusy(zones_);
            zones_.clear();
        }
    private:
        friend class ZonedBackend;
        ZonedBackend* be_;
        std::vector<uint32_t> zones_;
    };
    void MarkBusy(BusyZones* b, Shard& s, uint32_t z) REQUIRES(tmu_, s.mu) {
        if (s.busy[Slot(z)]) return;
        s.busy[Slot(z)] = true;
        busy_count_++;
        b->zones_.push_back(z);
    }
    // Storage a zone management command frees once its words are decided.
    struct Range {
        uint64_t b, e;  // sectors
        bool zero;      // Finish: zeroed before the word says Full
    };
    // One zone of a management command: decided, applied and, when it frees data, marked busy.
    ZoneError MgmtOne(Shard& s, uint32_t z, ZoneAction action, std::vector<Range>* discards, BusyZones* busy)
        REQUIRES(tmu_, s.mu);

    BlkResult WriteCommon(uint64_t off, const void* buf, uint64_t len, bool fua);
    // Argument checks of a write (kWrite/kWriteZeroes) or append; *conv when a write starts in a
    // conventional zone (those go through the driver as a plain disk).
    BlkResult CheckWriteArgs(BlkOp op, uint64_t off, uint64_t len, bool* conv) const;
    BlkResult WriteConventional(uint64_t off, const void* buf, uint64_t len, bool fua);
    // Decides a write or append to a sequential zone: zone rules, wp advance, the write recorded
    // in flight in *w (zone and first sector), the zone's extent in *ext.
    // With park, a request to a busy zone is queued (*parked) instead of waiting: it is decided
    // when the zone management holding the zone releases it, in submission order.
    BlkResult DecideSeqWrite(BlkOp op, uint64_t off, uint64_t len, ZoneWriteLink* w, uint64_t* ext,
                             BlkRequest* park = nullptr, bool* parked = nullptr);
    BlkResult WriteAction(BlkOp op, uint64_t off, uint64_t len, uint32_t z, ZoneAction* a) const;
    // The shard lock alone decides when the counters play no part; false: the caller retries
    // under tmu_ with DecideTransition.
    bool DecideLocal(Shard& s, BlkOp op, uint64_t off, uint64_t len, uint32_t z, ZoneWriteLink* w, uint64_t* ext,
                     BlkResult* out) REQUIRES(s.mu);
    BlkResult DecideTransition(Shard& s, BlkOp op, uint64_t off, uint64_t len, uint32_t z, ZoneWriteLink* w,
                               uint64_t* ext) REQUIRES(tmu_, s.mu);
    void RecordWrite(Shard& s, uint32_t z, const ZonePlan& plan, ZoneWriteLink* w, uint64_t* ext) REQUIRES(s.mu);
    // Starts the data transfer of a decided write or append.
    void StartWrite(BlkRequest* r, uint64_t ext);
    // The write is over (durable or not): the persisted wp may pass it.
    void EndWrite(ZoneWriteLink* w);
    // The write of len bytes failed: also gives its sectors back when it was the zone's last.
    void FailWrite(ZoneWriteLink* w, uint64_t len) EXCLUDES(tmu_);
    static void Unlink(Shard& s, ZoneWriteLink* w) REQUIRES(s.mu);

    // Asynchronous paths (Submit).
    void SubmitRead(BlkRequest* r);
    void SubmitWrite(BlkRequest* r);
    void CompleteWrite(BlkRequest* r, Status st);
    static void Complete(BlkRequest* r, BlkResult res) {
        r->result = std::move(res);
        r->done(r);
    }
    // Grouped flushes: a flush joins the queue; the thread that finds no flusher running becomes
    // it (a blocking Flush) or starts one on flush_thread_ (Submit), and the flusher persists once
    // for everything queued when it started, until the queue is empty.
    void QueueFlush(BlkRequest* r, bool run_here);
    void RunFlushes(const BlkRequest* own);
    Status DiscardRange(uint64_t begin_sector, uint64_t end_sector, bool zero_partial);
    Status PersistAll();
    Status WriteWords(const std::vector<uint32_t>& zones, const std::vector<uint64_t>& snapshot);

    std::unique_ptr<BlockDriver> drv_;
    ZonedStore* store_;
    bool persist_;
    ZonedGeometry geo_;
    uint64_t zs_ = 0, cap_ = 0;  // sectors
    ZoneLimits limits_;

    std::array<Shard, kShards> shards_;

    // Device-wide zone resources and what only transitions touch.
    util::Mutex tmu_;
    util::CondVar busy_cv_;  // busy_count_ dropped
    ZoneResources res_ GUARDED_BY(tmu_);
    std::set<uint32_t> implicit_ GUARDED_BY(tmu_);  // Implicitly Opened zones
    size_t busy_count_ GUARDED_BY(tmu_) = 0;
    std::function<void(uint32_t)> changed_cb_ GUARDED_BY(tmu_);
    // Eviction order of Implicitly Opened zones: the tick of each zone's last write. Written
    // under the zone's shard lock, read under tmu_; only kept when max_open can force evictions.
    std::atomic<uint64_t> tick_{0};
    std::unique_ptr<std::atomic<uint64_t>[]> last_write_;

    util::Mutex fmu_;  // the flush queue and the flusher's existence
    util::CondVar flush_idle_cv_;
    BlkRequest* flush_queue_ GUARDED_BY(fmu_) = nullptr;
    bool flushing_ GUARDED_BY(fmu_) = false;
    struct FlushTask : PoolTask {
        ZonedBackend* be = nullptr;
    } flush_task_;
    TaskPool flush_thread_{1};  // last: destroyed first, while the rest still exists
};

// Runs before the backend is shared with any other thread; it locks all the same, so the
// analysis checks it like the rest.
Status ZonedBackend::Init() {
    uint32_t n = geo_.nr_zones;
    std::vector<uint64_t> words(n);
    QZNS_TRY(store_->ReadZoneWords(0, n, words.data()));
    for (uint32_t z = 0; z < n; z++) {
        Status st = ValidateZoneWord(ZoneWord{words[z]}, Geo(z));
        if (!st.ok())
            return Status::Error(EUCLEAN, "zone " + std::to_string(z) + ": " + st.message() +
                                              "; run 'qzns-img check -r all'");
    }
    bool clean = store_->zoned_clean_at_open();
    bool writable = !drv_->read_only();
    // A restart is a power cycle for the zones: opened zones come back Closed (or Empty).
    std::vector<uint32_t> recovered;
    for (uint32_t z = geo_.nr_conv_zones; z < n; z++) {
        ZoneState s = ZoneWord{words[z]}.state();
        if (s != ZoneState::kImplicitOpen && s != ZoneState::kExplicitOpen) continue;
        ZoneDecision d = DecideZoneAction(ZoneWord{words[z]}, Geo(z), ZoneResources{}, limits_, ZoneAction::Recover());
        if (d.ok() && d.plan.changed) {
            words[z] = d.plan.word.raw;
            recovered.push_back(z);
        }
    }
    if (limits_.max_open) last_write_ = std::make_unique<std::atomic<uint64_t>[]>(n);
    {
        util::MutexLock t(tmu_);
        res_ = CountZoneResources(std::span<const ZoneWord>(reinterpret_cast<const ZoneWord*>(words.data()), n));
        for (uint32_t z = geo_.nr_conv_zones; z < n; z++)
            if (ZoneWord{words[z]}.state() == ZoneState::kImplicitOpen) implicit_.insert(z);
    }
    for (uint32_t i = 0; i < kShards; i++) {
        Shard& s = shards_[i];
        util::MutexLock lk(s.mu);
        size_t slots = n > i ? (n - i + kShards - 1) / kShards : 0;
        s.words.resize(slots);
        for (size_t k = 0; k < slots; k++) s.words[k] = words[i + k * kShards];
        s.extent.assign(slots, kUnmapped);
        s.dirty.assign(slots, false);
        s.busy.assign(slots, false);
    }
    for (uint32_t z : recovered) {
        Shard& s = ShardOf(z);
        util::MutexLock lk(s.mu);
        s.dirty[Slot(z)] = true;
        s.dirty_list.push_back(z);
    }
    if (!writable) return Status::Ok();
    if (!clean) {
        // Data written after the last flush may sit past a persisted wp; it can never be read,
        // but it holds space and, in a partially written cluster, would survive a later write.
        // Most zones have nothing allocated past their wp: the format reports a whole
        // unallocated L2 table's span at once, so those zones are skipped without a call each.
        uint64_t unallocated_end = 0;  // bytes: [.., unallocated_end) is known unallocated
        for (uint32_t z = geo_.nr_conv_zones; z < n; z++) {
            ZoneWord w{words[z]};
            if (w.state() == ZoneState::kFull || w.state() == ZoneState::kReadOnly || w.state() == ZoneState::kOffline)
                continue;
            uint64_t b = w.wp() * kSector, e = Geo(z).end() * kSector;
            bool allocated = false;
            for (uint64_t pos = std::max(b, unallocated_end); pos < e && !allocated;) {
                QZNS_ASSIGN(BlockStatus bs, drv_->GetStatus(pos, size() - pos));
                if (bs.allocated || bs.data || bs.bytes == 0) {
                    allocated = true;
                } else {
                    pos += bs.bytes;
                    unallocated_end = pos;
                }
            }
            if (!allocated) continue;
            // A linear extent is mapped whole; ask the host file whether anything is stored
            // past the wp: after most crashes nothing is, and a seek is cheaper than a punch.
            QZNS_ASSIGN(uint64_t ext, ZoneExtentOf(z, false));
            if (IsLinear(ext)) {
                uint64_t from = (w.wp() - Geo(z).zslba) * kSector;
                QZNS_ASSIGN(bool data, store_->ExtentMayHoldData(ext + from, cap_ * kSector - from));
                if (!data) continue;
            }
            QZNS_TRY(DiscardRange(w.wp(), Geo(z).end(), true));
        }
    }
    return PersistAll();
}

void ZonedBackend::ApplyWord(Shard& s, uint32_t z, const ZonePlan& plan) {
    WordOf(s, z) = plan.word.raw;
    if (plan.changed && !s.dirty[Slot(z)]) {
        s.dirty[Slot(z)] = true;
        s.dirty_list.push_back(z);
    }
    if (last_write_ && plan.word.state() == ZoneState::kImplicitOpen)
        last_write_[z].store(tick_.fetch_add(1, std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void ZonedBackend::ApplyResources(uint32_t z, const ZonePlan& plan) {
    if (plan.delta == ResourceDelta{}) return;
    res_ = ApplyResourceDelta(res_, plan.delta);
    if (plan.word.state() == ZoneState::kImplicitOpen) implicit_.insert(z);
    else implicit_.erase(z);
}

ZoneError ZonedBackend::EvictImplicitOpen(Shard& held, uint32_t except) {
    uint32_t victim = ~uint32_t{0};
    uint64_t oldest = ~uint64_t{0};
    for (uint32_t z : implicit_) {
        if (z == except) continue;
        uint64_t t = last_write_ ? last_write_[z].load(std::memory_order_relaxed) : 0;
        if (victim == ~uint32_t{0} || t < oldest) {
            victim = z;
            oldest = t;
        }
    }
    if (victim == ~uint32_t{0}) return ZoneError::kTooManyOpenZones;
    Shard& vs = ShardOf(victim);
    if (&vs == &held) {
        vs.mu.AssertHeld();
        return CloseImplicit(vs, victim);
    }
    // Never two shard locks at once (a thread holding B then A, beside one holding A then B,
    // is a deadlock as soon as anything but tmu_ orders them). The zone being decided cannot
    // change meanwhile: it is entering the open set, so only a transition, under tmu_, could.
    held.mu.Unlock();
    ZoneError e;
    {
        util::MutexLock lk(vs.mu);
        e = CloseImplicit(vs, victim);
    }
    held.mu.Lock();
    return e;
}

ZoneDecision ZonedBackend::DecideWithEviction(Shard& s, uint32_t z, ZoneAction a) {
    ZoneDecision d = DecideZoneAction(ZoneWord{WordOf(s, z)}, Geo(z), res_, limits_, a);
    if (!d.ok() || !d.plan.close_one_implicit_open) return d;
    ZoneError e = EvictImplicitOpen(s, z);
    if (e != ZoneError::kNone) {
        d.error = e;
        return d;
    }
    d = DecideZoneAction(ZoneWord{WordOf(s, z)}, Geo(z), res_, limits_, a);
    if (d.ok() && d.plan.close_one_implicit_open) d.error = ZoneError::kTooManyOpenZones;
    return d;
}

ZoneError ZonedBackend::CloseImplicit(Shard& s, uint32_t z) {
    ZoneDecision d = DecideZoneAction(ZoneWord{WordOf(s, z)}, Geo(z), res_, limits_, ZoneAction::ImplicitClose());
    if (!d.ok()) return d.error;
    Apply(s, z, d.plan);
    return ZoneError::kNone;
}

ZoneWord ZonedBackend::PersistableWord(Shard& s, uint32_t z) {
    ZoneWord w{WordOf(s, z)};
    uint64_t lowest = ~uint64_t{0};
    for (const ZoneWriteLink* l = s.inflight; l; l = l->next)
        if (l->zone == z) lowest = std::min(lowest, l->slba);
    if (lowest == ~uint64_t{0}) return w;
    // Writes still in flight are not durable: persist the wp below the lowest of them.
    uint64_t wp = std::min(w.wp(), lowest);
    uint64_t start = uint64_t{z} * zs_;
    ZoneState st = w.state();
    if (st == ZoneState::kFull || st == ZoneState::kImplicitOpen || st == ZoneState::kExplicitOpen) {
        if (wp == start) st = (w.attrs() & kZoneAttrZdev) ? ZoneState::kClosed : ZoneState::kEmpty;
        else st = st == ZoneState::kExplicitOpen ? st : ZoneState::kImplicitOpen;
    }
    uint8_t attrs = st == ZoneState::kEmpty ? 0 : static_cast<uint8_t>(w.attrs() & ~kZoneAttrZfc);
    return ZoneWord::Make(st, w.type(), attrs, wp);
}

ZoneInfo ZonedBackend::InfoOf(Shard& s, uint32_t z) {
    ZoneWord w{WordOf(s, z)};
    ZoneGeometry g = Geo(z);
    ZoneInfo zi;
    zi.start = g.zslba * kSector;
    zi.len = g.zsze * kSector;
    zi.cap = g.zcap * kSector;
    zi.wp = w.wp() * kSector;
    zi.state = w.state();
    zi.type = w.type();
    zi.attrs = w.attrs();
    return zi;
}

BlkResult ZonedBackend::Read(uint64_t off, void* buf, uint64_t len) {
    if (off > size() || len > size() - off)
        return BlkResult::Zone(ZoneError::kLbaOutOfRange, "read beyond the end of the disk");
    auto* out = static_cast<uint8_t*>(buf);
    // Split by zone; each piece is readable up to the zone's wp and zeros after it.
    for (uint64_t pos = off; pos < off + len;) {
        uint32_t z = ZoneOfSector(pos / kSector);
        uint64_t zend = (uint64_t{z} + 1) * zs_ * kSector;
        uint64_t n = std::min(off + len, zend) - pos;
        uint64_t readable = n, ext = kGeneric;
        {
            Shard& s = ShardOf(z);
            util::MutexLock lk(s.mu);
            ZoneWord w{WordOf(s, z)};
            if (w.state() == ZoneState::kOffline)
                return BlkResult::Zone(ZoneError::kZoneIsOffline, ZoneMsg(z, ZoneError::kZoneIsOffline));
            if (!IsConv(z)) {
                uint64_t wpb = w.wp() * kSector;
                readable = wpb > pos ? std::min(n, wpb - pos) : 0;
                ext = s.extent[Slot(z)];
            }
        }
        uint8_t* dst = out + (pos - off);
        if (readable) {
            Status st = ReadData(z, pos, dst, readable, ext);
            if (!st.ok()) return BlkResult::Io(st);
        }
        std::memset(dst + readable, 0, n - readable);
        pos += n;
    }
    return BlkResult::Ok();
}

BlkResult ZonedBackend::CheckWriteArgs(BlkOp op, uint64_t off, uint64_t len, bool* conv) const {
    *conv = false;
    if (read_only()) return BlkResult::Io(Status::Error(EROFS, "the image is opened read-only"));
    if (op == BlkOp::kAppend) {
        if (limits_.profile == ZonedProfile::kZbc)
            return BlkResult::Zone(ZoneError::kInvalidOpcode, "the zbc profile has no zone append");
        if (off % kSector || len % kSector)
            return BlkResult::Zone(ZoneError::kInvalidField, "zone append must be 512-byte aligned");
        if (off >= size()) return BlkResult::Zone(ZoneError::kLbaOutOfRange, "zone append beyond the end of the disk");
        return BlkResult::Ok();
    }
    if (off % kSector || len % kSector)
        return BlkResult::Zone(ZoneError::kInvalidField, "writes to a zoned disk must be 512-byte aligned");
    if (off > size() || len > size() - off)
        return BlkResult::Zone(ZoneError::kLbaOutOfRange, "write beyond the end of the disk");
    *conv = IsConv(ZoneOfSector(off / kSector));
    return BlkResult::Ok();
}

BlkResult ZonedBackend::WriteConventional(uint64_t off, const void* buf, uint64_t len, bool fua) {
    uint64_t slba = off / kSector, nlb = len / kSector;
    uint32_t z = ZoneOfSector(slba);
    // Conventional zones behave as a plain disk, possibly across several of them.
    for (uint32_t cz = z; uint64_t{cz} * zs_ < slba + nlb; cz++) {
        if (cz != z) {
            ZoneError e = CheckZoneCrossing(ZoneType::kConventional, Geo(cz).type, true, false);
            if (e != ZoneError::kNone) return BlkResult::Zone(e, ZoneMsg(cz, e));
        }
        Shard& s = ShardOf(cz);
        util::MutexLock lk(s.mu);
        ZoneWord w{WordOf(s, cz)};
        if (w.state() == ZoneState::kReadOnly)
            return BlkResult::Zone(ZoneError::kZoneIsReadOnly, ZoneMsg(cz, ZoneError::kZoneIsReadOnly));
        if (w.state() == ZoneState::kOffline)
            return BlkResult::Zone(ZoneError::kZoneIsOffline, ZoneMsg(cz, ZoneError::kZoneIsOffline));
    }
    Status st = buf ? drv_->Write(off, buf, len) : drv_->WriteZeroes(off, len, false);
    if (st.ok() && fua) return Flush();
    return st.ok() ? BlkResult::Ok() : BlkResult::Io(st);
}

BlkResult ZonedBackend::DecideSeqWrite(BlkOp op, uint64_t off, uint64_t len, ZoneWriteLink* w, uint64_t* ext,
                                       BlkRequest* park, bool* parked) {
    uint32_t z = ZoneOfSector(off / kSector);
    Shard& s = ShardOf(z);
    for (;;) {
        {
            util::MutexLock lk(s.mu);
            if (park && s.busy[Slot(z)]) {
                s.parked[z].push_back(park);
                *parked = true;
                return BlkResult::Ok();
            }
            WaitZoneIdle(s, z);
            BlkResult r;
            if (DecideLocal(s, op, off, len, z, w, ext, &r)) return r;
        }
        util::MutexLock t(tmu_);
        util::MutexLock lk(s.mu);
        // A zone management command took the zone while no lock was held: start again.
        if (s.busy[Slot(z)]) continue;
        return DecideTransition(s, op, off, len, z, w, ext);
    }
}

BlkResult ZonedBackend::WriteAction(BlkOp op, uint64_t off, uint64_t len, uint32_t z, ZoneAction* a) const {
    if (op == BlkOp::kAppend) {
        ZoneError e = CheckZoneStartLba(Geo(z), off / kSector);
        if (e != ZoneError::kNone) return BlkResult::Zone(e, "zone append must name the first LBA of a zone");
        *a = ZoneAction::Append(len / kSector);
    } else {
        *a = ZoneAction::Write(off / kSector, len / kSector);
    }
    return BlkResult::Ok();
}

bool ZonedBackend::DecideLocal(Shard& s, BlkOp op, uint64_t off, uint64_t len, uint32_t z, ZoneWriteLink* w,
                               uint64_t* ext, BlkResult* out) {
    ZoneAction a;
    *out = WriteAction(op, off, len, z, &a);
    if (!out->ok()) return true;
    ZoneDecision d = DecideZoneAction(ZoneWord{WordOf(s, z)}, Geo(z), kSaturated, limits_, a);
    if (!d.ok()) {
        // Only the real counters can tell whether the zone may open.
        if (d.error == ZoneError::kTooManyActiveZones || d.error == ZoneError::kTooManyOpenZones) return false;
        *out = BlkResult::Zone(d.error, ZoneMsg(z, d.error));
        return true;
    }
    if (d.plan.close_one_implicit_open || d.plan.delta != ResourceDelta{}) return false;
    RecordWrite(s, z, d.plan, w, ext);
    return true;
}

BlkResult ZonedBackend::DecideTransition(Shard& s, BlkOp op, uint64_t off, uint64_t len, uint32_t z,
                                         ZoneWriteLink* w, uint64_t* ext) {
    ZoneAction a;
    BlkResult r = WriteAction(op, off, len, z, &a);
    if (!r.ok()) return r;
    ZoneDecision d = DecideWithEviction(s, z, a);
    if (!d.ok()) return BlkResult::Zone(d.error, ZoneMsg(z, d.error));
    ApplyResources(z, d.plan);
    RecordWrite(s, z, d.plan, w, ext);
    return BlkResult::Ok();
}

void ZonedBackend::RecordWrite(Shard& s, uint32_t z, const ZonePlan& plan, ZoneWriteLink* w, uint64_t* ext) {
    ApplyWord(s, z, plan);
    w->zone = z;
    w->slba = plan.assigned_lba;
    w->prev = nullptr;
    w->next = s.inflight;
    if (s.inflight) s.inflight->prev = w;
    s.inflight = w;
    *ext = s.extent[Slot(z)];
}

void ZonedBackend::EndWrite(ZoneWriteLink* w) {
    Shard& s = ShardOf(w->zone);
    util::MutexLock lk(s.mu);
    Unlink(s, w);
}

void ZonedBackend::Unlink(Shard& s, ZoneWriteLink* w) {
    if (w->prev) w->prev->next = w->next;
    else s.inflight = w->next;
    if (w->next) w->next->prev = w->prev;
}

void ZonedBackend::FailWrite(ZoneWriteLink* w, uint64_t len) {
    uint32_t z = w->zone;
    Shard& s = ShardOf(z);
    util::MutexLock t(tmu_);
    util::MutexLock lk(s.mu);
    Unlink(s, w);
    // A drive whose write failed has not moved its write pointer over it: the host may retry at
    // the same LBA (Linux does for a Write Fault). That is only possible when nothing was decided
    // after it; otherwise its sectors stay a hole below the wp, read as whatever landed.
    ZoneWord old{WordOf(s, z)};
    ZoneGeometry g = Geo(z);
    if (old.wp() != w->slba + len / kSector) return;
    ZoneState st = old.state();
    if (st != ZoneState::kImplicitOpen && st != ZoneState::kExplicitOpen && st != ZoneState::kClosed &&
        st != ZoneState::kFull)
        return;
    bool at_start = w->slba == g.zslba, zdev = (old.attrs() & kZoneAttrZdev) != 0;
    ZoneState to = st;
    if (st == ZoneState::kFull) {
        // It was opened to be filled; back to opened if the limits still allow, else Closed.
        ZoneResources with = res_;
        with.implicit_open++;
        bool open_ok = !limits_.max_open || with.open() <= limits_.max_open;
        bool active_ok = !limits_.max_active || with.active() <= limits_.max_active;
        if (!active_ok) return;  // the zone keeps its word: it cannot become active again
        to = open_ok ? ZoneState::kImplicitOpen : ZoneState::kClosed;
    }
    if (at_start && !zdev && to != ZoneState::kExplicitOpen) to = ZoneState::kEmpty;
    uint8_t attrs = to == ZoneState::kEmpty ? 0 : static_cast<uint8_t>(old.attrs() & ~kZoneAttrZfc);
    ZonePlan plan;
    plan.word = ZoneWord::Make(to, old.type(), attrs, w->slba);
    plan.changed = plan.word.raw != old.raw;
    ZoneResources a = CountZoneResources(std::span<const ZoneWord>(&old, 1));
    ZoneResources b = CountZoneResources(std::span<const ZoneWord>(&plan.word, 1));
    plan.delta = ResourceDelta{static_cast<int32_t>(b.implicit_open) - static_cast<int32_t>(a.implicit_open),
                               static_cast<int32_t>(b.explicit_open) - static_cast<int32_t>(a.explicit_open),
                               static_cast<int32_t>(b.closed) - static_cast<int32_t>(a.closed)};
    Apply(s, z, plan);
}

BlkResult ZonedBackend::WriteCommon(uint64_t off, const void* buf, uint64_t len, bool fua) {
    BlkOp op = buf ? BlkOp::kWrite : BlkOp::kWriteZeroes;
    bool conv;
    BlkResult r = CheckWriteArgs(op, off, len, &conv);
    if (!r.ok() || len == 0) return r;
    if (conv) return WriteConventional(off, buf, len, fua);
    ZoneWriteLink w;
    uint64_t ext;
    r = DecideSeqWrite(op, off, len, &w, &ext);
    if (!r.ok()) return r;
    Status st = WriteData(w.zone, off, buf, len, ext);
    if (!st.ok()) {
        FailWrite(&w, len);
        return BlkResult::Io(st);
    }
    EndWrite(&w);
    return fua ? Flush() : BlkResult::Ok();
}

BlkResult ZonedBackend::Append(uint64_t zone_start, const void* buf, uint64_t len, bool fua) {
    bool conv;
    BlkResult r = CheckWriteArgs(BlkOp::kAppend, zone_start, len, &conv);
    if (!r.ok()) return r;
    ZoneWriteLink w;
    uint64_t ext;
    r = DecideSeqWrite(BlkOp::kAppend, zone_start, len, &w, &ext);
    if (!r.ok()) return r;
    uint64_t lba = w.slba;
    Status st = WriteData(w.zone, lba * kSector, buf, len, ext);
    if (!st.ok()) {
        FailWrite(&w, len);
        return BlkResult::Io(st);
    }
    EndWrite(&w);
    if (fua) {
        r = Flush();
        if (!r.ok()) return r;
    }
    return BlkResult::Ok(lba * kSector);
}

// ---- asynchronous requests ----

void ZonedBackend::Submit(BlkRequest* r) {
    r->backend = this;
    switch (r->op) {
    case BlkOp::kRead: return SubmitRead(r);
    case BlkOp::kWrite:
    case BlkOp::kWriteZeroes:
    case BlkOp::kAppend: return SubmitWrite(r);
    case BlkOp::kFlush: return QueueFlush(r, false);
    case BlkOp::kDiscard: return SubmitBlocking(this, r);
    }
}

void ZonedBackend::SubmitRead(BlkRequest* r) {
    if (r->off > size() || r->len > size() - r->off)
        return Complete(r, BlkResult::Zone(ZoneError::kLbaOutOfRange, "read beyond the end of the disk"));
    uint32_t z = ZoneOfSector(r->off / kSector);
    uint64_t zb = uint64_t{z} * zs_ * kSector;
    // Only a read inside one sequential zone whose extent is known avoids the pool.
    if (IsConv(z) || r->off + r->len > zb + zs_ * kSector) return SubmitBlocking(this, r);
    uint64_t readable, ext;
    {
        Shard& s = ShardOf(z);
        util::MutexLock lk(s.mu);
        ZoneWord w{WordOf(s, z)};
        if (w.state() == ZoneState::kOffline)
            return Complete(r, BlkResult::Zone(ZoneError::kZoneIsOffline, ZoneMsg(z, ZoneError::kZoneIsOffline)));
        uint64_t wpb = w.wp() * kSector;
        readable = wpb > r->off ? std::min(r->len, wpb - r->off) : 0;
        ext = s.extent[Slot(z)];
    }
    if (readable && !IsLinear(ext)) return SubmitBlocking(this, r);
    auto* p = static_cast<uint8_t*>(r->buf);
    std::memset(p + readable, 0, r->len - readable);
    if (!readable) return Complete(r, BlkResult::Ok());
    r->PrepareIo(FileIo::Op::kRead, p, readable, ext + (r->off - zb), [](FileIo* io, Status st) {
        Complete(BlkRequest::FromIo(io), st.ok() ? BlkResult::Ok() : BlkResult::Io(std::move(st)));
    });
    store_->SubmitExtentIo(&r->io);
}

void ZonedBackend::SubmitWrite(BlkRequest* r) {
    bool conv;
    BlkResult res = CheckWriteArgs(r->op, r->off, r->len, &conv);
    if (!res.ok() || (r->op != BlkOp::kAppend && r->len == 0)) return Complete(r, std::move(res));
    if (conv) return SubmitBlocking(this, r);
    uint64_t ext;
    bool parked = false;
    res = DecideSeqWrite(r->op, r->off, r->len, &r->write, &ext, r, &parked);
    if (parked) return;
    if (!res.ok()) return Complete(r, std::move(res));
    StartWrite(r, ext);
}

void ZonedBackend::StartWrite(BlkRequest* r, uint64_t ext) {
    if (IsLinear(ext) && r->op != BlkOp::kWriteZeroes) {
        uint64_t host = ext + (r->write.slba - Geo(r->write.zone).zslba) * kSector;
        r->PrepareIo(FileIo::Op::kWrite, r->buf, r->len, host, [](FileIo* io, Status st) {
            BlkRequest* q = BlkRequest::FromIo(io);
            static_cast<ZonedBackend*>(q->backend)->CompleteWrite(q, std::move(st));
        });
        return store_->SubmitExtentIo(&r->io);
    }
    // The zone's first write (which maps its extent), zeroes, or an old-layout zone: blocking.
    r->task.run = [](PoolTask* t) {
        BlkRequest* q = BlkRequest::FromTask(t);
        auto* be = static_cast<ZonedBackend*>(q->backend);
        Status st = be->WriteData(q->write.zone, q->write.slba * kSector, q->buf, q->len, kUnmapped);
        be->CompleteWrite(q, std::move(st));
    };
    blocking_pool().Post(&r->task);
}

void ZonedBackend::CompleteWrite(BlkRequest* r, Status st) {
    if (!st.ok()) {
        FailWrite(&r->write, r->len);
        return Complete(r, BlkResult::Io(std::move(st)));
    }
    EndWrite(&r->write);
    if (r->fua) return QueueFlush(r, false);  // completes r with the flush's outcome
    Complete(r, BlkResult::Ok(r->op == BlkOp::kAppend ? r->write.slba * kSector : 0));
}

void ZonedBackend::QueueFlush(BlkRequest* r, bool run_here) {
    bool start;
    {
        util::MutexLock lk(fmu_);
        r->next = flush_queue_;
        flush_queue_ = r;
        start = !flushing_;
        flushing_ = true;
    }
    if (!start) return;
    if (run_here) return RunFlushes(r);
    flush_thread_.Post(&flush_task_);
}

void ZonedBackend::RunFlushes(const BlkRequest* own) {
    for (;;) {
        BlkRequest* batch;
        {
            util::MutexLock lk(fmu_);
            batch = flush_queue_;
            flush_queue_ = nullptr;
            if (!batch) {
                flushing_ = false;
                flush_idle_cv_.NotifyAll();
                return;
            }
        }
        Status st = PersistAll();
        bool own_done = false;
        for (BlkRequest* q = batch; q;) {
            BlkRequest* next = q->next;
            own_done |= q == own;
            uint64_t value = q->op == BlkOp::kAppend ? q->write.slba * kSector : 0;  // a FUA append
            Complete(q, st.ok() ? BlkResult::Ok(value) : BlkResult::Io(st));
            q = next;
        }
        if (own_done) {
            // A blocking caller is served: later flushes go on on the flush thread.
            util::MutexLock lk(fmu_);
            if (!flush_queue_) {
                flushing_ = false;
                flush_idle_cv_.NotifyAll();
                return;
            }
            flush_thread_.Post(&flush_task_);
            return;
        }
    }
}

BlkResult ZonedBackend::Discard(uint64_t off, uint64_t len) {
    if (read_only()) return BlkResult::Io(Status::Error(EROFS, "the image is opened read-only"));
    if (off > size() || len > size() - off)
        return BlkResult::Zone(ZoneError::kLbaOutOfRange, "discard beyond the end of the disk");
    uint64_t conv_end = uint64_t{geo_.nr_conv_zones} * geo_.zone_size;
    if (off + len > conv_end)
        return BlkResult::Zone(ZoneError::kInvalidField, "discard is only possible in conventional zones; "
                                                         "reset sequential zones instead");
    Status st = drv_->Discard(off, len);
    return st.ok() ? BlkResult::Ok() : BlkResult::Io(st);
}

Status ZonedBackend::DiscardRange(uint64_t begin, uint64_t end, bool zero_partial) {
    if (end <= begin) return Status::Ok();
    uint32_t z = ZoneOfSector(begin);
    uint64_t b = begin * kSector, e = end * kSector;
    if (!IsConv(z)) {
        QZNS_ASSIGN(uint64_t ext, ZoneExtentOf(z, false));
        if (ext == kUnmapped) return Status::Ok();  // nothing stored: reads as zeros already
        if (IsLinear(ext)) {
            // One call, whatever the range: the extent stays mapped and reads as zeros.
            uint64_t unit = store_->allocation_unit();
            uint64_t zb = Geo(z).zslba * kSector;
            uint64_t ext_len = (cap_ * kSector + unit - 1) / unit * unit;
            uint64_t rb = b - zb, re = std::min(e - zb, ext_len);
            return re > rb ? store_->ZeroExtent(ext + rb, re - rb) : Status::Ok();
        }
    }
    if (!zero_partial) {
        QZNS_TRY(drv_->Discard(b, e - b));
    } else {
        // Whole clusters are simply dropped (they then read as zeros); partial clusters at
        // either end get zeros written, since their other bytes may be live or become readable.
        uint64_t cs = store_->allocation_unit();
        uint64_t mid_b = std::min(e, (b + cs - 1) / cs * cs);
        uint64_t mid_e = std::max(mid_b, e / cs * cs);
        if (mid_b > b) QZNS_TRY(drv_->WriteZeroes(b, mid_b - b, true));
        if (mid_e > mid_b) QZNS_TRY(drv_->Discard(mid_b, mid_e - mid_b));
        if (e > mid_e) QZNS_TRY(drv_->WriteZeroes(mid_e, e - mid_e, true));
    }
    if (!IsConv(z)) {
        // A scattered zone emptied this way may now be unmapped: its next first write can
        // give it a linear extent.
        Shard& s = ShardOf(z);
        util::MutexLock lk(s.mu);
        if (s.extent[Slot(z)] == kGeneric) s.extent[Slot(z)] = kUnmapped;
    }
    return Status::Ok();
}

Result<uint64_t> ZonedBackend::ZoneExtentOf(uint32_t z, bool allocate) {
    if (IsConv(z)) return kGeneric;
    Shard& s = ShardOf(z);
    {
        util::MutexLock lk(s.mu);
        if (s.extent[Slot(z)] != kUnmapped) return s.extent[Slot(z)];
    }
    // The format may allocate or read L2 tables here: not under a lock. Two callers racing for one
    // zone get the same answer (the format serialises them).
    QZNS_ASSIGN(ZoneExtent e, store_->MapZone(z, allocate));
    uint64_t v = e.kind == ZoneExtent::Kind::kLinear      ? e.host
                 : e.kind == ZoneExtent::Kind::kScattered ? kGeneric
                                                          : kUnmapped;
    util::MutexLock lk(s.mu);
    if (s.extent[Slot(z)] == kUnmapped) s.extent[Slot(z)] = v;
    return s.extent[Slot(z)];
}

Status ZonedBackend::ReadData(uint32_t z, uint64_t off, void* buf, uint64_t len, uint64_t ext) {
    if (ext == kUnmapped) { QZNS_ASSIGN(ext, ZoneExtentOf(z, false)); }
    if (ext == kUnmapped) {
        std::memset(buf, 0, len);
        return Status::Ok();
    }
    if (!IsLinear(ext)) return drv_->Read(off, buf, len);
    return store_->ReadExtent(ext + (off - Geo(z).zslba * kSector), buf, len);
}

Status ZonedBackend::WriteData(uint32_t z, uint64_t off, const void* buf, uint64_t len, uint64_t ext) {
    if (ext == kUnmapped) { QZNS_ASSIGN(ext, ZoneExtentOf(z, true)); }
    if (!IsLinear(ext)) return buf ? drv_->Write(off, buf, len) : drv_->WriteZeroes(off, len, false);
    uint64_t host = ext + (off - Geo(z).zslba * kSector);
    return buf ? store_->WriteExtent(host, buf, len) : store_->ZeroExtent(host, len);
}

void ZonedBackend::WaitZoneIdle(Shard& s, uint32_t z) {
    s.idle_cv.Wait(s.mu, [&]() REQUIRES(s.mu) { return !s.busy[Slot(z)]; });
}

void ZonedBackend::ReleaseBusy(const std::vector<uint32_t>& zones) {
    if (zones.empty()) return;
    struct Decided {
        BlkRequest* r;
        BlkResult res;
        uint64_t ext;
    };
    std::vector<Decided> replay;
    {
        util::MutexLock t(tmu_);
        for (uint32_t z : zones) {
            Shard& s = ShardOf(z);
            util::MutexLock lk(s.mu);
            s.busy[Slot(z)] = false;
            // Parked requests are decided now, under the same lock that clears busy, before any
            // later arrival can be.
            auto it = s.parked.find(z);
            if (it != s.parked.end()) {
                for (BlkRequest* r : it->second) {
                    Decided d{r, BlkResult::Ok(), 0};
                    d.res = DecideTransition(s, r->op, r->off, r->len, z, &r->write, &d.ext);
                    replay.push_back(std::move(d));
                }
                s.parked.erase(it);
            }
            s.idle_cv.NotifyAll();
        }
        busy_count_ -= zones.size();
        busy_cv_.NotifyAll();
    }
    for (Decided& d : replay) {
        if (!d.res.ok()) Complete(d.r, std::move(d.res));
        else StartWrite(d.r, d.ext);
    }
}

ZoneError ZonedBackend::MgmtOne(Shard& s, uint32_t z, ZoneAction action, std::vector<Range>* discards,
                                BusyZones* busy) {
    ZoneDecision d = DecideWithEviction(s, z, action);
    if (!d.ok()) return d.error;
    Apply(s, z, d.plan);
    // Finish makes [old wp, capacity) readable: it must read zeros, not stale data.
    if (d.plan.discards()) {
        discards->push_back({d.plan.discard_begin, d.plan.discard_end, action.kind == ZoneActionKind::kFinish});
        MarkBusy(busy, s, z);
    }
    return ZoneError::kNone;
}

BlkResult ZonedBackend::ZoneMgmt(ZoneMgmtOp op, uint64_t zone_start, bool all) {
    if (read_only()) return BlkResult::Io(Status::Error(EROFS, "the image is opened read-only"));
    ZoneAction action;
    switch (op) {
    case ZoneMgmtOp::kOpen: action = ZoneAction::Open(); break;
    case ZoneMgmtOp::kClose: action = ZoneAction::Close(); break;
    case ZoneMgmtOp::kFinish: action = ZoneAction::Finish(); break;
    case ZoneMgmtOp::kReset: action = ZoneAction::Reset(); break;
    case ZoneMgmtOp::kOffline: action = ZoneAction::Offline(); break;
    }
    std::vector<Range> discards;
    BusyZones busy(this);
    if (all) {
        util::MutexLock t(tmu_);
        // Waiting only while holding no busy zone cannot deadlock (see BusyZones).
        busy_cv_.Wait(tmu_, [&]() REQUIRES(tmu_) { return busy_count_ == 0; });
        if (action.kind == ZoneActionKind::kOpen) {
            ZoneError e = CheckSelectAllOpen(res_, limits_);
            if (e != ZoneError::kNone) return BlkResult::Zone(e, ZoneErrorName(e));
        }
        for (uint32_t z = geo_.nr_conv_zones; z < geo_.nr_zones; z++) {
            Shard& s = ShardOf(z);
            util::MutexLock lk(s.mu);
            if (!AppliesToSelectAll(action.kind, ZoneWord{WordOf(s, z)}.state())) continue;
            ZoneError e = MgmtOne(s, z, action, &discards, &busy);
            if (e != ZoneError::kNone) return BlkResult::Zone(e, ZoneMsg(z, e));
        }
    } else {
        if (zone_start % kSector || zone_start >= size())
            return BlkResult::Zone(ZoneError::kLbaOutOfRange, "zone start beyond the end of the disk");
        uint64_t slba = zone_start / kSector;
        uint32_t z = ZoneOfSector(slba);
        ZoneError e = CheckZoneStartLba(Geo(z), slba);
        if (e != ZoneError::kNone) return BlkResult::Zone(e, "the LBA is not the start of a zone");
        Shard& s = ShardOf(z);
        for (;;) {
            {
                util::MutexLock lk(s.mu);
                WaitZoneIdle(s, z);
            }
            util::MutexLock t(tmu_);
            util::MutexLock lk(s.mu);
            if (s.busy[Slot(z)]) continue;  // taken again before tmu_ was
            e = MgmtOne(s, z, action, &discards, &busy);
            if (e != ZoneError::kNone) return BlkResult::Zone(e, ZoneMsg(z, e));
            break;
        }
    }
    // Finish zeroes [old wp, capacity) before its word says Full, so the range never shows stale
    // data. Reset and Offline free the zone's clusters only after their word is durable: freed
    // first, a power cut could leave the old wp over data that is gone. Clusters a cut keeps
    // past the new wp are freed by recovery.
    bool word_first = false;
    for (const Range& r : discards) word_first |= !r.zero;
    if (word_first) {
        BlkResult r = Flush();
        if (!r.ok()) return r;
    }
    for (const Range& r : discards) {
        Status st = DiscardRange(r.b, r.e, r.zero);
        if (!st.ok()) return BlkResult::Io(st);
    }
    busy.Release();
    return Flush();
}

BlkResult ZonedBackend::SetZoneDescExt(uint64_t zone_start, const void* data) {
    if (read_only()) return BlkResult::Io(Status::Error(EROFS, "the image is opened read-only"));
    if (zone_start % kSector || zone_start >= size())
        return BlkResult::Zone(ZoneError::kLbaOutOfRange, "zone start beyond the end of the disk");
    uint64_t slba = zone_start / kSector;
    uint32_t z = ZoneOfSector(slba);
    bool store = false;
    {
        ZoneError e = CheckZoneStartLba(Geo(z), slba);
        if (e != ZoneError::kNone) return BlkResult::Zone(e, "the LBA is not the start of a zone");
        Shard& s = ShardOf(z);
        util::MutexLock t(tmu_);
        util::MutexLock lk(s.mu);
        ZoneDecision d = DecideZoneAction(ZoneWord{WordOf(s, z)}, Geo(z), res_, limits_, ZoneAction::SetZde());
        if (!d.ok()) return BlkResult::Zone(d.error, ZoneMsg(z, d.error));
        Apply(s, z, d.plan);
        store = d.plan.store_zde;
    }
    if (store) {
        Status st = store_->WriteZded(z, data);
        if (!st.ok()) return BlkResult::Io(st);
    }
    return Flush();
}

BlkResult ZonedBackend::InjectZoneFault(uint32_t z, ZoneState state) {
    if (read_only()) return BlkResult::Io(Status::Error(EROFS, "the image is opened read-only"));
    if (z >= geo_.nr_zones) return BlkResult::Io(Status::Error(EINVAL, "zone index out of range"));
    if (state != ZoneState::kReadOnly && state != ZoneState::kOffline)
        return BlkResult::Io(Status::Error(EINVAL, "a zone can be made read-only or offline only"));
    std::vector<std::pair<uint64_t, uint64_t>> discards;
    std::function<void(uint32_t)> cb;
    BusyZones busy(this);
    Shard& s = ShardOf(z);
    for (;;) {
        {
            util::MutexLock lk(s.mu);
            WaitZoneIdle(s, z);
        }
        util::MutexLock t(tmu_);
        util::MutexLock lk(s.mu);
        if (s.busy[Slot(z)]) continue;
        ZoneAction a = state == ZoneState::kReadOnly ? ZoneAction::MakeReadOnly() : ZoneAction::MakeOffline();
        ZoneDecision d = DecideZoneAction(ZoneWord{WordOf(s, z)}, Geo(z), res_, limits_, a);
        if (!d.ok()) return BlkResult::Zone(d.error, ZoneMsg(z, d.error));
        Apply(s, z, d.plan);
        if (d.plan.discards()) {
            discards.emplace_back(d.plan.discard_begin, d.plan.discard_end);
            MarkBusy(&busy, s, z);
        }
        cb = changed_cb_;
        break;
    }
    // As for Reset: the Offline word is durable before the zone's clusters are freed.
    if (!discards.empty()) {
        BlkResult r = Flush();
        if (!r.ok()) return r;
    }
    for (auto [b, e] : discards) {
        Status st = DiscardRange(b, e, false);
        if (!st.ok()) return BlkResult::Io(st);
    }
    busy.Release();
    BlkResult r = Flush();
    if (r.ok() && cb) cb(z);
    return r;
}

Result<ZoneInfo> ZonedBackend::GetZone(uint32_t zone) {
    if (zone >= geo_.nr_zones) return Status::Error(EINVAL, "zone index out of range");
    Shard& s = ShardOf(zone);
    util::MutexLock lk(s.mu);
    return InfoOf(s, zone);
}

Result<std::vector<ZoneInfo>> ZonedBackend::ReportZones(uint64_t off, uint32_t max) {
    if (off >= size()) return Status::Error(EINVAL, "report start beyond the end of the disk");
    std::vector<ZoneInfo> out;
    uint32_t first = ZoneOfSector(off / kSector);
    out.reserve(std::min<uint64_t>(max, geo_.nr_zones - first));
    for (uint32_t z = first; z < geo_.nr_zones && out.size() < max; z++) {
        Shard& s = ShardOf(z);
        util::MutexLock lk(s.mu);
        out.push_back(InfoOf(s, z));
    }
    return out;
}

Status ZonedBackend::PersistAll() {
    // An image that stopped taking writes while open says why (its writes since the last good
    // flush may be lost); one opened read-only has nothing to persist.
    if (read_only()) return drv_->Flush();
    // Words first recorded, then the data they describe made durable, then the words written.
    std::vector<std::pair<uint32_t, uint64_t>> taken;  // zone, persistable word
    for (Shard& s : shards_) {
        util::MutexLock lk(s.mu);
        size_t kept = 0;
        for (uint32_t z : s.dirty_list) {
            ZoneWord w = PersistableWord(s, z);
            taken.emplace_back(z, w.raw);
            // A word held back by writes in flight stays dirty: a later flush persists the rest.
            if (w.raw != WordOf(s, z)) s.dirty_list[kept++] = z;
            else s.dirty[Slot(z)] = false;
        }
        s.dirty_list.resize(kept);
    }
    std::sort(taken.begin(), taken.end());
    std::vector<uint32_t> zones(taken.size());
    std::vector<uint64_t> snapshot(taken.size());
    for (size_t i = 0; i < taken.size(); i++) {
        zones[i] = taken[i].first;
        snapshot[i] = taken[i].second;
    }
    Status st = WriteWords(zones, snapshot);
    if (!st.ok()) {
        // Nothing of this flush is known to be durable: the next flush writes these words again
        // (dropping them would leave the image's wp behind data a later flush reports durable).
        for (uint32_t z : zones) {
            Shard& s = ShardOf(z);
            util::MutexLock lk(s.mu);
            if (s.dirty[Slot(z)]) continue;
            s.dirty[Slot(z)] = true;
            s.dirty_list.push_back(z);
        }
    }
    return st;
}

Status ZonedBackend::WriteWords(const std::vector<uint32_t>& zones, const std::vector<uint64_t>& snapshot) {
    QZNS_TRY(drv_->Flush());
    if (zones.empty() || !persist_) return Status::Ok();
    // One write per run of consecutive dirty zones. Only the in-memory word is kept per zone
    // (8 bytes); words of zones that did not change are never rewritten.
    size_t i = 0;
    while (i < zones.size()) {
        size_t j = i;
        while (j + 1 < zones.size() && zones[j + 1] == zones[j] + 1) j++;
        QZNS_TRY(store_->WriteZoneWords(zones[i], static_cast<uint32_t>(j - i + 1), &snapshot[i]));
        i = j + 1;
    }
    return drv_->Flush();
}

BlkResult ZonedBackend::Flush() {
    BlkRequest r;
    r.op = BlkOp::kFlush;
    BlkWaiter w;
    w.Arm(r);
    QueueFlush(&r, true);
    return w.Wait(r);
}

Result<std::vector<UnflushedZone>> ZonedBackend::UnflushedZones() {
    // Zone words are written only by a flush, which syncs them before it completes: with no
    // request in flight, the words the format holds are the durable ones.
    uint32_t n = geo_.nr_zones;
    std::vector<uint64_t> durable(n);
    QZNS_TRY(store_->ReadZoneWords(0, n, durable.data()));
    std::vector<UnflushedZone> out;
    for (uint32_t z = geo_.nr_conv_zones; z < n; z++) {
        ZoneGeometry g = Geo(z);
        ZoneWord d{durable[z]};
        uint64_t now;
        {
            Shard& s = ShardOf(z);
            util::MutexLock lk(s.mu);
            now = WordOf(s, z);
        }
        ZoneWord m{now};
        // Only writes move a wp between flushes; any other change was durable on completion.
        if (m.raw == d.raw || d.state() == ZoneState::kFull || d.state() == ZoneState::kReadOnly ||
            d.state() == ZoneState::kOffline)
            continue;
        uint64_t cap_end = g.zslba + g.zcap;
        uint64_t dwp = d.state() == ZoneState::kEmpty ? g.zslba : std::min(d.wp(), cap_end);
        uint64_t mwp = m.state() == ZoneState::kEmpty ? g.zslba : std::min(m.wp(), cap_end);
        if (mwp > dwp) out.push_back(UnflushedZone{z, g.zslba * kSector, dwp * kSector, mwp * kSector});
    }
    return out;
}

Status ZonedBackend::Close() {
    {
        // The flusher's place is taken for good: no request may be in flight (the contract).
        util::MutexLock fl(fmu_);
        while (flushing_) flush_idle_cv_.Wait(fmu_);
        flushing_ = true;
    }
    if (!read_only()) {
        // A clean shutdown is a controller shutdown for the zones: opened zones are stored
        // Closed (or Empty), exactly as every later open would present them.
        util::MutexLock t(tmu_);
        for (uint32_t z = geo_.nr_conv_zones; z < geo_.nr_zones; z++) {
            Shard& s = ShardOf(z);
            util::MutexLock lk(s.mu);
            ZoneState st = ZoneWord{WordOf(s, z)}.state();
            if (st != ZoneState::kImplicitOpen && st != ZoneState::kExplicitOpen) continue;
            ZoneDecision d = DecideZoneAction(ZoneWord{WordOf(s, z)}, Geo(z), res_, limits_, ZoneAction::Recover());
            if (d.ok()) Apply(s, z, d.plan);
        }
    }
    QZNS_TRY(PersistAll());
    return drv_->Close();
}

}  // namespace

Result<std::unique_ptr<BlockBackend>> OpenZonedBackend(std::unique_ptr<BlockDriver> drv, bool persist_zones) {
    ZonedStore* store = drv->zoned_store();
    if (!store) return Status::Error(EINVAL, "not a zoned image");
    if (!store->zoned_problem().empty())
        return Status::Error(EUCLEAN, "zoned metadata is invalid: " + store->zoned_problem());
    auto be = std::make_unique<ZonedBackend>(std::move(drv), store, persist_zones);
    QZNS_TRY(be->Init());
    return std::unique_ptr<BlockBackend>(std::move(be));
}

}  // namespace qzns
