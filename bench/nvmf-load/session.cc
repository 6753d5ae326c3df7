#include "bench/nvmf-load/session.h"

#include <poll.h>
#include <time.h>

#include <cstring>

namespace qzns::load {

namespace tcp = nvmf::tcp;

void SetSgl(uint8_t* s, uint32_t len, bool in_capsule) {
    s[1] = 0x40;  // PSDT: SGL, the only kind NVMe over Fabrics has
    PutLe(s + 24, 0, 8);
    PutLe(s + 32, len, 4);
    s[39] = in_capsule ? 0x01 : 0x5a;
}

void MakeSqe(uint8_t* s, uint8_t opcode, uint16_t cid, uint32_t nsid, uint32_t len, bool in_capsule) {
    NewSqe(s, opcode, cid, nsid);
    SetSgl(s, len, in_capsule);
}

bool Session::Exec(uint8_t* sqe, const std::vector<uint8_t>& out, std::vector<uint8_t>* in,
                   Completion* c, std::string* err) {
    const uint16_t cid = cid_++;
    PutLe(sqe + 2, cid, 2);
    uint8_t* d = c_.PutCapsule(sqe, static_cast<uint32_t>(out.size()));
    if (d) std::memcpy(d, out.data(), out.size());
    if (in) in->clear();
    bool done = false;
    timespec start{}, now{};
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (!done) {
        bool ok = c_.Poll(100, [&](const RxPdu& p) {
            if (p.type == static_cast<uint8_t>(tcp::PduType::kC2HData)) {
                if (in) in->insert(in->end(), p.data, p.data + p.data_len);
                if (p.flags & tcp::kFlagDataSuccess) {
                    *c = Completion{};
                    done = true;
                }
            } else if (p.type == static_cast<uint8_t>(tcp::PduType::kCapsuleResp)) {
                const uint8_t* cqe = p.hdr + 8;
                c->dw0 = static_cast<uint32_t>(GetLe(cqe, 4));
                c->dw1 = static_cast<uint32_t>(GetLe(cqe + 4, 4));
                c->status = StatusOf(cqe);
                done = true;
            }
        });
        if (!ok) {
            *err = c_.error().empty() ? "connection failed" : c_.error();
            return false;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!done && now.tv_sec - start.tv_sec > 30) {
            *err = "no completion within 30 s";
            return false;
        }
    }
    return true;
}

bool Session::Connect(uint16_t qid, uint16_t sqsize, const std::string& subnqn, const std::string& hostnqn,
                      uint32_t host_index, uint16_t* cntlid, std::string* err) {
    uint8_t sqe[64];
    MakeSqe(sqe, 0x7f, 0, 0, 1024, true);
    sqe[4] = 0x01;  // FCTYPE Connect
    PutLe(sqe + 42, qid, 2);
    PutLe(sqe + 44, sqsize, 2);
    std::vector<uint8_t> data(1024, 0);
    // HOSTID: distinct per host, like its NQN.
    PutLe(data.data(), 0x717a6e736c6f6164ull, 8);
    PutLe(data.data() + 8, host_index, 4);
    PutLe(data.data() + 16, qid ? *cntlid : 0xffff, 2);
    std::memcpy(data.data() + 256, subnqn.data(), std::min<size_t>(subnqn.size(), 255));
    std::memcpy(data.data() + 512, hostnqn.data(), std::min<size_t>(hostnqn.size(), 255));
    Completion c;
    if (!Exec(sqe, data, nullptr, &c, err)) return false;
    if (c.status != 0) {
        *err = "Connect qid " + std::to_string(qid) + " failed, status 0x" + std::to_string(c.status);
        return false;
    }
    if (qid == 0) *cntlid = static_cast<uint16_t>(c.dw0);
    return true;
}

bool Session::Enable(std::string* err) {
    uint8_t sqe[64];
    MakeSqe(sqe, 0x7f, 0, 0, 0, false);
    sqe[4] = 0x00;  // Property Set
    PutLe(sqe + 44, 0x14, 4);  // CC
    // EN, IOSQES 6, IOCQES 4, CSS 110b: all supported I/O command sets (ZNS needs it).
    PutLe(sqe + 48, (6u << 16) | (4u << 20) | (6u << 4) | 1u, 4);
    Completion c;
    if (!Exec(sqe, {}, nullptr, &c, err)) return false;
    for (int i = 0; i < 100; i++) {
        MakeSqe(sqe, 0x7f, 0, 0, 0, false);
        sqe[4] = 0x04;  // Property Get
        PutLe(sqe + 44, 0x1c, 4);  // CSTS
        if (!Exec(sqe, {}, nullptr, &c, err)) return false;
        if (c.status == 0 && (c.dw0 & 1)) return true;
        poll(nullptr, 0, 10);
    }
    *err = "CSTS.RDY never set";
    return false;
}

bool Session::Identify(uint32_t nsid, Geometry* g, std::string* err) {
    uint8_t sqe[64];
    std::vector<uint8_t> d;
    Completion c;
    auto identify = [&](uint8_t cns, uint8_t csi, uint32_t ns) {
        MakeSqe(sqe, 0x06, 0, ns, 4096, false);
        sqe[40] = cns;
        sqe[47] = csi;
        if (!Exec(sqe, {}, &d, &c, err)) return false;
        if (c.status != 0 || d.size() != 4096) {
            *err = "Identify CNS " + std::to_string(cns) + " failed";
            return false;
        }
        return true;
    };
    if (!identify(0x01, 0, 0)) return false;
    GeometryFromController(d.data(), g);
    if (!identify(0x00, 0, nsid)) return false;
    GeometryFromNamespace(d.data(), nsid, g);
    const uint8_t flbas = d[26];
    if (!identify(0x05, 0x02, nsid)) {
        g->zsze = 0;  // not a zoned namespace
        err->clear();
        return true;
    }
    GeometryFromZoned(d.data(), flbas, g);
    return true;
}

}  // namespace qzns::load
