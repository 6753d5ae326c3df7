// Opening a block backend: a plain disk passes requests through; a zoned qcow2 image gets the
// zoned layer (block/zoned/zoned-backend.cc).
#include "block/block-backend.h"

#include "block/qcow2/qcow2.h"
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
    Status Close() override { return drv_->Close(); }

private:
    std::unique_ptr<BlockDriver> drv_;
};

}  // namespace

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
    QZNS_ASSIGN(auto drv, OpenImage(opts.filename, o));
    return OpenDriver(std::move(drv), opts.persist_zones);
}

}  // namespace qzns
