// The Discovery Log Page (NVMe-oF 1.1 §5.3, LID 70h): the records of a discovery subsystem
// and the page each host reads. The discovery subsystem owns one; its controllers (the same
// Controller as every other, hw/nvme/admin-discovery.cc) read it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "util/endian.h"
#include "util/mutex.h"

namespace qzns::nvme {

inline constexpr char kDiscoveryNqn[] = "nqn.2014-08.org.nvmexpress.discovery";

// Discovery Log Page (LID 70h): a 1024-byte header, then NUMREC 1024-byte entries.
inline constexpr uint8_t kLidDiscovery = 0x70;

struct DiscoveryLogHeader {
    le64 genctr;  // changes whenever the record set changes
    le64 numrec;
    le16 recfmt;  // 0
    uint8_t rsvd18[1006];
};
static_assert(sizeof(DiscoveryLogHeader) == 1024);

struct DiscoveryLogEntry {
    uint8_t trtype;   // transport type (3 = TCP)
    uint8_t adrfam;   // address family (1 = IPv4, 2 = IPv6)
    uint8_t subtype;  // 2 = NVM subsystem, 3 = current discovery subsystem
    uint8_t treq;     // bits 1:0 secure channel (2 = not required), bit 2 SQ flow control disable
    le16 portid;
    le16 cntlid;  // FFFFh: dynamic controller model
    le16 asqsz;   // maximum admin SQ size a Connect may ask for
    le16 eflags;
    uint8_t rsvd12[20];
    char trsvcid[32];  // ASCII port number, NUL padded
    uint8_t rsvd64[192];
    char subnqn[256];
    char traddr[256];  // ASCII numeric address, NUL padded
    uint8_t tsas[256];  // transport specific; TCP: byte 0 SECTYPE (0 = no security)
};
static_assert(sizeof(DiscoveryLogEntry) == 1024);
static_assert(offsetof(DiscoveryLogEntry, portid) == 4 && offsetof(DiscoveryLogEntry, cntlid) == 6 &&
              offsetof(DiscoveryLogEntry, asqsz) == 8 && offsetof(DiscoveryLogEntry, eflags) == 10 &&
              offsetof(DiscoveryLogEntry, trsvcid) == 32 && offsetof(DiscoveryLogEntry, subnqn) == 256 &&
              offsetof(DiscoveryLogEntry, traddr) == 512 && offsetof(DiscoveryLogEntry, tsas) == 768);

namespace disc {
constexpr uint8_t kTrtypeTcp = 3;
constexpr uint8_t kAdrfamIpv4 = 1;
constexpr uint8_t kAdrfamIpv6 = 2;
constexpr uint8_t kSubtypeNvm = 2;
constexpr uint8_t kTreqSecureChannelNotRequired = 2;
constexpr uint8_t kSectypeNone = 0;
constexpr uint16_t kAsqsz = 32;  // the Linux host's admin queue depth
// Asynchronous event: Notice, Discovery Log Page Change (F0h); OAES / AEC bit 31.
constexpr uint8_t kAenInfoDiscoveryLogChange = 0xf0;
constexpr uint32_t kAecDiscoveryLogChange = 1u << 31;
}  // namespace disc

// One (subsystem, port) pair a host may connect to.
struct DiscoveryRecord {
    std::string subnqn;
    std::string traddr;  // numeric IPv4 or IPv6 address, no brackets
    uint16_t trsvcid = 4420;
    uint16_t portid = 1;
    // Host NQNs allowed to see the record; empty = every host (nvmet also hides subsystems a
    // host may not connect to).
    std::vector<std::string> allowed_hosts;
};

// The record set and its generation counter. Thread-safe.
class DiscoveryLog {
public:
    // Replaces the record set; true when it differed (GENCTR advanced).
    bool SetRecords(std::vector<DiscoveryRecord> records);
    uint64_t genctr() const;
    // The whole log page (header and the records `hostnqn` may see), as Get Log Page returns it.
    std::vector<uint8_t> Page(const std::string& hostnqn) const;

private:
    mutable util::Mutex mu_;
    std::vector<DiscoveryRecord> records_ GUARDED_BY(mu_);
    uint64_t genctr_ GUARDED_BY(mu_) = 0;
};

}  // namespace qzns::nvme
