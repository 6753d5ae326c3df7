// Explicit-endian integer fields for on-disk and wire structures. They have alignment 1 and do not
// convert implicitly, so a packed struct made of them has the exact spec layout and every access
// states its byte order. qcow2 metadata is big-endian; NVMe and vfio-user are little-endian.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace qzns {

template <typename T, bool Big>
class EndianInt {
    static_assert(std::is_unsigned_v<T>);

public:
    constexpr EndianInt() = default;
    explicit EndianInt(T v) { set(v); }

    T get() const {
        T v = 0;
        for (unsigned i = 0; i < sizeof(T); i++) {
            unsigned shift = Big ? 8 * (sizeof(T) - 1 - i) : 8 * i;
            v |= static_cast<T>(static_cast<T>(b_[i]) << shift);
        }
        return v;
    }
    void set(T v) {
        for (unsigned i = 0; i < sizeof(T); i++) {
            unsigned shift = Big ? 8 * (sizeof(T) - 1 - i) : 8 * i;
            b_[i] = static_cast<uint8_t>(v >> shift);
        }
    }

private:
    uint8_t b_[sizeof(T)] = {};
};

using be16 = EndianInt<uint16_t, true>;
using be32 = EndianInt<uint32_t, true>;
using be64 = EndianInt<uint64_t, true>;
using le16 = EndianInt<uint16_t, false>;
using le32 = EndianInt<uint32_t, false>;
using le64 = EndianInt<uint64_t, false>;
static_assert(sizeof(be64) == 8 && alignof(be64) == 1);

inline uint64_t load_be64(const void* p) { return reinterpret_cast<const be64*>(p)->get(); }
inline void store_be64(void* p, uint64_t v) { reinterpret_cast<be64*>(p)->set(v); }
inline uint32_t load_be32(const void* p) { return reinterpret_cast<const be32*>(p)->get(); }
inline void store_be32(void* p, uint32_t v) { reinterpret_cast<be32*>(p)->set(v); }
inline uint16_t load_be16(const void* p) { return reinterpret_cast<const be16*>(p)->get(); }
inline void store_be16(void* p, uint16_t v) { reinterpret_cast<be16*>(p)->set(v); }

}  // namespace qzns
