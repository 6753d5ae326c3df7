// The synchronous part of a host's life: Fabrics Connect (admin and I/O queues), Property
// Set CC.EN, Identify, one command at a time on a Conn. The load itself runs in queue.cc.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/load/nvme-cmd.h"
#include "bench/nvmf-load/conn.h"

namespace qzns::load {

// Builds the 64 bytes of a submission queue entry with an SGL data descriptor: in-capsule
// (Data Block, Offset subtype) when in_capsule, else a Transport Data Block of `len` bytes.
void MakeSqe(uint8_t* sqe, uint8_t opcode, uint16_t cid, uint32_t nsid, uint32_t len, bool in_capsule);
// Writes PSDT and the SGL descriptor into an SQE whose other fields are set.
void SetSgl(uint8_t* sqe, uint32_t len, bool in_capsule);

struct Completion {
    uint32_t dw0 = 0, dw1 = 0;
    uint16_t status = 0;  // SCT << 8 | SC (CRD, More and DNR dropped)
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
