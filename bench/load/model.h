// What the load generator believes each zone holds. Data is never stored: every block written is
// a pure function of (zone start, zone generation, command tag, block index in the command), so
// the model keeps one 64-bit word per LBA saying which command put it there. Writes are
// acknowledged in order at the write pointer; appends land where the controller says, so their
// blocks are recorded when the completion names the LBA.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

namespace qzns::load {

inline uint64_t Mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// Fills one logical block with the pattern of (zslba, gen, tag, idx).
inline void FillBlock(uint8_t* dst, uint32_t lba_size, uint64_t zslba, uint32_t gen, uint32_t tag,
                      uint32_t idx) {
    const uint64_t key = Mix64(zslba ^ Mix64((uint64_t{gen} << 32) | tag) ^ (uint64_t{idx} << 48));
    for (uint32_t w = 0; w < lba_size / 8; w++) {
        const uint64_t v = Mix64(key + w);
        std::memcpy(dst + 8 * w, &v, 8);
    }
}

// A model entry: tag << 16 | index; 0 means "not acknowledged".
inline uint64_t BlockId(uint32_t tag, uint32_t idx) { return (uint64_t{tag} << 16) | idx; }
inline uint32_t BlockTag(uint64_t id) { return static_cast<uint32_t>(id >> 16); }
inline uint32_t BlockIdx(uint64_t id) { return static_cast<uint32_t>(id & 0xffff); }

enum class Fault : uint8_t { kNone, kReadOnly, kOffline };

enum class Phase : uint8_t {
    kUnknown,  // content not known yet: the first report decides
    kFill,     // writing (or appending) up to the capacity
    kSweep,    // reading back every acknowledged block before the reset
    kReset,    // a reset is due or in flight
    kDone,     // verify-only run: swept
};

struct Zone {
    uint64_t zslba = 0;
    uint64_t cap = 0;        // LBAs
    uint32_t gen = 1;        // bumped by every reset
    bool append_mode = false;
    Fault fault = Fault::kNone;
    Phase phase = Phase::kUnknown;
    uint64_t wp = 0;         // write mode: acknowledged write pointer (offset in the zone)
    uint64_t reserved = 0;   // blocks submitted (acknowledged + in flight)
    uint64_t acked = 0;      // blocks acknowledged
    uint64_t prefix = 0;     // offsets [0, prefix) are all acknowledged
    uint64_t high = 0;       // one past the highest acknowledged offset
    uint64_t sweep = 0;      // next offset to read back in kSweep
    uint32_t inflight = 0;   // commands of any kind
    uint32_t appends = 0;    // appends in flight
    bool write_inflight = false;
    bool dirty = false;      // a write/append outcome was lost with a connection
    bool frozen = false;     // covered by a Report Zones in flight
    // A reset failed with Invalid Zone State Transition, the spec's answer for a Read Only or
    // Offline zone: the next report must show one of those, or the status was unexpected.
    bool reset_refused = false;
    std::vector<uint64_t> blk;  // per offset: BlockId or 0

    bool quiet() const { return inflight == 0 && !frozen; }
    void Record(uint64_t off, uint32_t tag, uint32_t idx) {
        blk[off] = BlockId(tag, idx);
        acked++;
        if (off + 1 > high) high = off + 1;
        while (prefix < cap && blk[prefix] != 0) prefix++;
    }
    void ResetModel() {
        gen++;
        wp = reserved = acked = prefix = high = sweep = 0;
        std::fill(blk.begin(), blk.end(), 0);
        dirty = false;
    }
};

}  // namespace qzns::load
