#include "block/zone-prefix.h"

#include <algorithm>
#include <random>
#include <string>

namespace qzns {
namespace {

constexpr uint64_t kMaxUnit = 4096;  // the largest logical block an export offers
// The file-level cut draws from `seed` itself; the prefixes take another stream of the same seed.
constexpr uint64_t kPrefixStream = 0x7a6f6e652d707265ull;

}  // namespace

Status CheckAtomicUnit(uint64_t atomic_unit) {
    if (atomic_unit < kSector || (atomic_unit & (atomic_unit - 1)) != 0)
        return Status::Error(EINVAL, "power-cut: the atomic unit must be a power of two of at least 512 bytes, not " +
                                         std::to_string(atomic_unit));
    return Status::Ok();
}

Result<std::vector<ZonePrefix>> DrawZonePrefixes(BlockBackend& be, const std::vector<UnflushedZone>& zones,
                                                 uint64_t seed, uint64_t atomic_unit) {
    std::mt19937_64 rng(seed ^ kPrefixStream);
    std::vector<ZonePrefix> out;
    out.reserve(zones.size());
    for (const UnflushedZone& z : zones) {
        ZonePrefix p;
        p.zone = z;
        // A namespace with 4 KiB logical blocks writes whole blocks: P must not split one.
        uint64_t d = z.durable_wp - z.start, w = z.wp - z.start, unit = kSector;
        while (unit < kMaxUnit && (d | w) % (unit * 2) == 0) unit *= 2;
        unit = std::max(unit, atomic_unit);
        // Boundaries first..last lie strictly between the two write pointers.
        uint64_t first = d / unit + 1, last = (w + unit - 1) / unit - 1;
        uint64_t inner = last >= first ? last - first + 1 : 0;
        uint64_t r = rng() % (inner + 2);
        p.cut_wp = r == 0 ? z.durable_wp : r == inner + 1 ? z.wp : z.start + (first + r - 1) * unit;
        p.data.resize(p.cut_wp - z.durable_wp);
        if (!p.data.empty()) {
            BlkResult rd = be.Read(z.durable_wp, p.data.data(), p.data.size());
            if (!rd.ok()) return rd.status.Prefix("power-cut: reading zone " + std::to_string(z.zone));
        }
        out.push_back(std::move(p));
    }
    return out;
}

Status ReplayZonePrefixes(const BlockBackendOptions& opts, const std::vector<ZonePrefix>& prefixes,
                          PowerCutReport& rep) {
    // What each zone kept: its prefix, or nothing when the active-zone limit refuses it.
    auto count = [&rep](const ZonePrefix& p, uint64_t kept_to) {
        rep.zones_unflushed++;
        rep.zone_bytes_kept += kept_to - p.zone.durable_wp;
        rep.zone_bytes_lost += p.zone.wp - kept_to;
        if (kept_to > p.zone.durable_wp && kept_to < p.zone.wp) rep.zones_partial++;
    };
    bool any = false;
    for (const ZonePrefix& p : prefixes) any |= !p.data.empty();
    if (!any) {
        for (const ZonePrefix& p : prefixes) count(p, p.zone.durable_wp);
        return Status::Ok();
    }
    BlockBackendOptions o = opts;
    o.volatile_cache = 0;
    // The dead backend still holds the image (and its lock) until its owner destroys it; it
    // writes nothing more.
    o.lock = false;
    auto opened = BlockBackend::Open(o);
    if (!opened.ok()) return opened.status().Prefix("power-cut: reopening to keep zone prefixes");
    std::unique_ptr<BlockBackend> be = std::move(opened).value();
    for (const ZonePrefix& p : prefixes) {
        if (p.data.empty()) {
            count(p, p.zone.durable_wp);
            continue;
        }
        std::string zone = "zone " + std::to_string(p.zone.zone);
        QZNS_ASSIGN(ZoneInfo zi, be->GetZone(p.zone.zone));
        if (zi.wp != p.zone.durable_wp)
            return Status::Error(EIO, "power-cut: " + zone + " came back at " + std::to_string(zi.wp) +
                                          ", not at its persisted write pointer " +
                                          std::to_string(p.zone.durable_wp));
        BlkResult w = be->Write(zi.wp, p.data.data(), p.data.size(), false);
        // Zones that were Empty at the last flush may now outnumber the active-zone limit
        // (others filled up since, but come back Closed): those keep nothing.
        if (w.zone_error == ZoneError::kTooManyActiveZones) {
            count(p, p.zone.durable_wp);
            continue;
        }
        if (!w.ok()) return w.status.Prefix("power-cut: keeping the prefix of " + zone);
        count(p, p.cut_wp);
    }
    // A clean close persists the words, opened zones stored Closed as any power-on shows them.
    return be->Close().Prefix("power-cut: persisting zone prefixes");
}

}  // namespace qzns
