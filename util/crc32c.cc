#include "util/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace qzns {
namespace {

constexpr uint32_t kPoly = 0x82F63B78;  // Castagnoli, bit-reversed

// Slicing-by-8 tables: kTable[k][b] is the CRC of byte b followed by k zero bytes, so eight
// input bytes fold in with eight lookups instead of eight dependent shifts.
constexpr std::array<std::array<uint32_t, 256>, 8> MakeTables() {
    std::array<std::array<uint32_t, 256>, 8> t{};
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int i = 0; i < 8; i++) c = (c >> 1) ^ ((c & 1) ? kPoly : 0);
        t[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; b++)
        for (int k = 1; k < 8; k++) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xff];
    return t;
}

constexpr auto kTable = MakeTables();

uint32_t LoadLe32(const uint8_t* p) {
    return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
           static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

// Works on the inverted running state, not on the finished CRC.
uint32_t UpdatePortable(uint32_t state, const uint8_t* p, size_t len) {
    while (len >= 8) {
        uint32_t lo = LoadLe32(p) ^ state;
        uint32_t hi = LoadLe32(p + 4);
        state = kTable[7][lo & 0xff] ^ kTable[6][(lo >> 8) & 0xff] ^
                kTable[5][(lo >> 16) & 0xff] ^ kTable[4][lo >> 24] ^
                kTable[3][hi & 0xff] ^ kTable[2][(hi >> 8) & 0xff] ^
                kTable[1][(hi >> 16) & 0xff] ^ kTable[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--) state = (state >> 8) ^ kTable[0][(state ^ *p++) & 0xff];
    return state;
}

#if defined(__x86_64__)
// Compiled for SSE4.2 on its own so the rest of the build needs no -msse4.2; only called after
// the runtime CPU check below.
__attribute__((target("sse4.2"))) uint32_t UpdateSse42(uint32_t state, const uint8_t* p,
                                                        size_t len) {
    uint64_t s = state;
    while (len >= 8) {
        uint64_t v;
        std::memcpy(&v, p, 8);  // the instruction consumes little-endian qwords, as x86 is
        s = _mm_crc32_u64(s, v);
        p += 8;
        len -= 8;
    }
    auto s32 = static_cast<uint32_t>(s);
    while (len--) s32 = _mm_crc32_u8(s32, *p++);
    return s32;
}

using UpdateFn = uint32_t (*)(uint32_t, const uint8_t*, size_t);

UpdateFn PickUpdate() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") ? UpdateSse42 : UpdatePortable;
}
#endif

}  // namespace

uint32_t Crc32cPortable(const void* data, size_t len, uint32_t crc) {
    return ~UpdatePortable(~crc, static_cast<const uint8_t*>(data), len);
}

uint32_t Crc32c(const void* data, size_t len, uint32_t crc) {
#if defined(__x86_64__)
    static const UpdateFn update = PickUpdate();
    return ~update(~crc, static_cast<const uint8_t*>(data), len);
#else
    return Crc32cPortable(data, len, crc);
#endif
}

}  // namespace qzns
