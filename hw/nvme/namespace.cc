#include "hw/nvme/namespace.h"

#include <bit>
#include <cstring>

namespace qzns::nvme {
namespace {

Status CheckLbaSize(uint32_t lba_size) {
    if (lba_size != 512 && lba_size != 4096)
        return Status::Error(EINVAL, "lba_size must be 512 or 4096, not " + std::to_string(lba_size));
    return Status::Ok();
}

uint64_t Fnv1a(const std::string& s, uint64_t seed) {
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (unsigned char c : s) {
        h ^= c;
        h *= 0x100000001b3ull;
    }
    return h;
}

}  // namespace

Result<std::shared_ptr<Namespace>> Namespace::MakeZoned(std::shared_ptr<BlockBackend> be, uint32_t nsid,
                                                        const NamespaceOptions& opts) {
    QZNS_TRY(CheckLbaSize(opts.lba_size));
    if (!be->is_zoned()) return Status::Error(EINVAL, "the image has no zones");
    if (be->profile() != ZonedProfile::kZns)
        return Status::Error(EINVAL, "only zoned_profile=zns images can be exported as NVMe ZNS namespaces");
    uint64_t zs = be->zone_size(), zc = be->zone_capacity();
    if (zs % kSector || !std::has_single_bit(zs / kSector))
        return Status::Error(EINVAL, "zone_size must be a power of two in 512-byte sectors for NVMe ZNS "
                                     "(Linux hides the namespace otherwise)");
    if (zs % opts.lba_size || zc % opts.lba_size)
        return Status::Error(EINVAL, "zone_size and zone_capacity must be multiples of lba_size " +
                                         std::to_string(opts.lba_size));
    uint32_t conv = be->nr_conv_zones();
    if (conv >= be->nr_zones()) return Status::Error(EINVAL, "the image has no sequential zones");
    uint32_t mab = be->max_append_bytes();
    if (mab != 0 && mab < 4096)
        return Status::Error(EINVAL, "max_append_sectors must be at least 8 (4 KiB): NVMe ZASL cannot express less");
    if (be->zd_extension_size() % 64)
        return Status::Error(EINVAL, "the zone descriptor extension size must be a multiple of 64 bytes");
    std::shared_ptr<Namespace> ns(new Namespace());
    ns->be_ = std::move(be);
    ns->opts_ = opts;
    ns->nsid_ = nsid;
    ns->zoned_ = true;
    ns->lba_shift_ = static_cast<unsigned>(std::countr_zero(opts.lba_size));
    ns->first_zone_ = conv;
    ns->nr_zones_ = ns->be_->nr_zones() - conv;
    ns->backend_zone_end_ = ns->be_->nr_zones();
    ns->base_ = uint64_t{conv} * zs;
    ns->zsze_ = zs >> ns->lba_shift_;
    ns->zcap_ = zc >> ns->lba_shift_;
    ns->nsze_ = uint64_t{ns->nr_zones_} * ns->zsze_;
    ns->zdes_ = ns->be_->zd_extension_size() / 64;
    if (ns->base_ + (ns->nsze_ << ns->lba_shift_) > ns->be_->size())
        return Status::Error(EINVAL, "the last zone is shorter than zone_size; NVMe ZNS needs whole zones");
    return ns;
}

Result<std::shared_ptr<Namespace>> Namespace::MakeConventional(std::shared_ptr<BlockBackend> be, uint32_t nsid,
                                                               const NamespaceOptions& opts, uint64_t base,
                                                               uint64_t bytes) {
    QZNS_TRY(CheckLbaSize(opts.lba_size));
    if (bytes < opts.lba_size) return Status::Error(EINVAL, "the namespace would be smaller than one block");
    if (base % opts.lba_size) return Status::Error(EINVAL, "namespace start is not block aligned");
    std::shared_ptr<Namespace> ns(new Namespace());
    ns->be_ = std::move(be);
    ns->opts_ = opts;
    ns->nsid_ = nsid;
    ns->zoned_ = false;
    ns->lba_shift_ = static_cast<unsigned>(std::countr_zero(opts.lba_size));
    ns->base_ = base;
    ns->nsze_ = bytes >> ns->lba_shift_;
    if (ns->be_->is_zoned()) {
        ns->first_zone_ = static_cast<uint32_t>(base / ns->be_->zone_size());
        ns->backend_zone_end_ = static_cast<uint32_t>((base + bytes) / ns->be_->zone_size());
    }
    return ns;
}

std::optional<uint64_t> Namespace::ZslbaOfBackendZone(uint32_t zone) const {
    if (!zoned_ || zone < first_zone_ || zone >= backend_zone_end_) return std::nullopt;
    return uint64_t{zone - first_zone_} * zsze_;
}

std::optional<uint32_t> Namespace::BackendZoneOfLba(uint64_t lba) const {
    if (!be_->is_zoned() || lba >= nsze_) return std::nullopt;
    return static_cast<uint32_t>(ByteOffset(lba) / be_->zone_size());
}

bool Namespace::OwnsBackendZone(uint32_t zone) const {
    return be_->is_zoned() && zone >= first_zone_ && zone < backend_zone_end_;
}

void Namespace::AssignIds(const std::string& subnqn) {
    std::string key = subnqn + "/" + std::to_string(nsid_);
    if (opts_.nguid) {
        nguid_ = *opts_.nguid;
    } else {
        uint64_t a = Fnv1a(key, 1), b = Fnv1a(key, 2);
        for (int i = 0; i < 8; i++) {
            nguid_[i] = static_cast<uint8_t>(a >> (56 - 8 * i));
            nguid_[8 + i] = static_cast<uint8_t>(b >> (56 - 8 * i));
        }
    }
    if (opts_.uuid) {
        uuid_ = *opts_.uuid;
    } else {
        uint64_t a = Fnv1a(key, 3), b = Fnv1a(key, 4);
        for (int i = 0; i < 8; i++) {
            uuid_[i] = static_cast<uint8_t>(a >> (56 - 8 * i));
            uuid_[8 + i] = static_cast<uint8_t>(b >> (56 - 8 * i));
        }
        uuid_[6] = static_cast<uint8_t>((uuid_[6] & 0x0f) | 0x80);  // RFC 9562 version 8 (custom)
        uuid_[8] = static_cast<uint8_t>((uuid_[8] & 0x3f) | 0x80);  // variant 10b
    }
}

void Namespace::FillIdNs(IdNs* id) const {
    id->nsze.set(nsze_);
    id->ncap.set(nsze_);
    id->nuse.set(nsze_);
    id->nsfeat = 0;
    id->nlbaf = 0;  // one format (0's based)
    id->flbas = 0;
    id->nmic = 0;   // see SubsystemConfig::multi_controller
    id->dlfeat = 0;
    id->nsattr = read_only() ? 1 : 0;
    std::memcpy(id->nguid, nguid_.data(), 16);
    id->lbaf[0].ms.set(0);
    id->lbaf[0].lbads = static_cast<uint8_t>(lba_shift_);
    id->lbaf[0].rp = 0;
}

void Namespace::FillIdNsZns(IdNsZns* id) const {
    id->zoc.set(0);  // Linux requires neither variable capacity nor active excursions
    id->ozcs.set(kOzcsRazb);  // reads may cross zone boundaries (the backend serves them)
    uint32_t mar = be_->max_active_zones(), mor = be_->max_open_zones();
    id->mar.set(mar ? mar - 1 : 0xffffffffu);
    id->mor.set(mor ? mor - 1 : 0xffffffffu);
    id->rrl.set(opts_.rrl_seconds);
    id->frl.set(opts_.frl_seconds);
    id->lbafe[0].zsze.set(zsze_);
    id->lbafe[0].zdes = static_cast<uint8_t>(zdes_);
}

void Namespace::FillIdNsIndependent(IdNsIndependent* id) const {
    id->nsfeat = 0;
    id->nmic = 0;
    id->nsattr = read_only() ? 1 : 0;
    id->nstat = 1;  // namespace ready
}

void Namespace::FillDescriptors(uint8_t* buf) const {
    size_t off = 0;
    auto add = [&](uint8_t nidt, const void* v, uint8_t len) {
        NsIdDescHeader h{nidt, len, {0, 0}};
        std::memcpy(buf + off, &h, sizeof(h));
        std::memcpy(buf + off + sizeof(h), v, len);
        off += sizeof(h) + len;
    };
    add(kNidtNguid, nguid_.data(), 16);
    add(kNidtUuid, uuid_.data(), 16);
    uint8_t csi_v = csi();
    add(kNidtCsi, &csi_v, 1);
}

uint8_t Namespace::ExtraZoneAttrs(uint64_t zone_index, const ZoneInfo& zi) {
    if (!opts_.rrl_seconds && !opts_.frl_seconds) return 0;
    util::MutexLock lk(timer_mu_);
    auto it = timers_.find(zone_index);
    if (it == timers_.end() || it->second.state != zi.state) return 0;
    return it->second.attrs;
}

void Namespace::ForgetZoneTimers(uint64_t zone_index, bool all) {
    if (!opts_.rrl_seconds && !opts_.frl_seconds) return;
    util::MutexLock lk(timer_mu_);
    if (all) timers_.clear();
    else timers_.erase(zone_index);
}

std::vector<uint64_t> Namespace::ScanRecommendedLimits(std::chrono::steady_clock::time_point now) {
    std::vector<uint64_t> changed;
    if (!zoned_ || (!opts_.rrl_seconds && !opts_.frl_seconds)) return changed;
    auto zones = be_->ReportZones(base_, nr_zones_);
    if (!zones.ok()) return changed;
    util::MutexLock lk(timer_mu_);
    for (size_t i = 0; i < zones->size(); i++) {
        const ZoneInfo& zi = (*zones)[i];
        ZoneTimer& t = timers_[i];
        if (t.state != zi.state || t.since.time_since_epoch().count() == 0) {
            t.state = zi.state;
            t.since = now;
            t.attrs = 0;  // the host acted on the zone: recommendations start over
        }
        auto held = std::chrono::duration_cast<std::chrono::seconds>(now - t.since).count();
        uint8_t want = 0;
        bool active = zi.state == ZoneState::kImplicitOpen || zi.state == ZoneState::kExplicitOpen ||
                      zi.state == ZoneState::kClosed;
        if (opts_.rrl_seconds && zi.state == ZoneState::kFull && held >= opts_.rrl_seconds) want |= kZoneAttrRzr;
        if (opts_.frl_seconds && active && held >= opts_.frl_seconds) want |= kZoneAttrFzr;
        if (want != t.attrs) {
            bool newly = (want & ~t.attrs) != 0;
            t.attrs = want;
            if (newly) changed.push_back(i * zsze_);
        }
    }
    return changed;
}

}  // namespace qzns::nvme
