// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum of NVMe/TCP header and
// data digests and iSCSI. One implementation for the whole project.
#pragma once

#include <cstddef>
#include <cstdint>

namespace qzns {

// Standard CRC-32C of data, with the usual pre- and post-inversion (init ~0, final xor ~0):
// Crc32c("123456789", 9) == 0xE3069283. `crc` is the result of a previous call, so a buffer
// can be checksummed in pieces: Crc32c(b, nb, Crc32c(a, na)) == Crc32c(a || b). The default 0
// starts a new checksum. Uses SSE4.2 when the CPU has it.
[[nodiscard]] uint32_t Crc32c(const void* data, size_t len, uint32_t crc = 0);

// The portable table implementation, exposed so tests can check it against the hardware path.
[[nodiscard]] uint32_t Crc32cPortable(const void* data, size_t len, uint32_t crc = 0);

}  // namespace qzns
