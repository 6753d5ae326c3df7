// The synchronous part of a host's life: Fabrics Connect (admin and I/O queues), Property
// Set CC.EN, Identify, one command at a time on a Conn. The load itself runs in queue.cc.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/nvmf-load/conn.h"

namespace qzns::load {

// Builds the 64 bytes of a submission queue entry with an SGL data descriptor: in-capsule
// (Data Block, Offset subtype) when in_capsule, else a Transport Data Block of `len` bytes.
void MakeSqe(uint8_t* sqe, uint8_t opcode, uint16_t cid, uint32_t nsid, uint32_t len, bool in_capsule);
inline void PutLe(uint8_t* p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline uint64_t GetLe(const uint8_t* p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= uint64_t{p[i]} << (8 * i);
    return v;
}

struct Completion {
    uint32_t dw0 = 0, dw1 = 0;
    uint16_t status = 0;  // SCT << 8 | SC (CRD, More and DNR dropped)
};
inline uint16_t StatusOf(const uint8_t* cqe) {
    return static_cast<uint16_t>((GetLe(cqe + 14, 2) >> 1) & 0x7ff);
}

// What Identify says about the namespace, and what the controller accepts per command.
struct Geometry {
    uint32_t nsid = 1;
    uint32_t lba_size = 512;
    uint64_t nsze = 0;       // LBAs
    uint64_t zsze = 0;       // LBAs; 0 for a namespace without zones
    uint32_t icd = 0;        // in-capsule data bytes on I/O queues
    uint32_t max_xfer = 0;   // bytes (MDTS); 0 = no limit
    uint32_t nzones() const { return zsze ? static_cast<uint32_t>(nsze / zsze) : 0; }
};

class Session {
public:
    explicit Session(Conn& c) : c_(c) {}
    // Runs one command; `out` goes in the capsule, C2H data lands in *in. False when the
    // connection failed (the reason in *err); a command error is in c->status.
    bool Exec(uint8_t* sqe, const std::vector<uint8_t>& out, std::vector<uint8_t>* in, Completion* c,
              std::string* err);
    // Connect for queue qid (0 = admin); on the admin queue *cntlid receives the controller ID.
    bool Connect(uint16_t qid, uint16_t sqsize, const std::string& subnqn, const std::string& hostnqn,
                 uint32_t host_index, uint16_t* cntlid, std::string* err);
    bool Enable(std::string* err);
    bool Identify(uint32_t nsid, Geometry* g, std::string* err);

private:
    Conn& c_;
    uint16_t cid_ = 0;
};

}  // namespace qzns::load
